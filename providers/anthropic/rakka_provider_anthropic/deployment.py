"""Deployment config of the ``anthropic`` provider kind, and the headers it sends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from rakka_runtime.provider import DeploymentConfig, Secret

ANTHROPIC_ENDPOINT = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"

try:
    USER_AGENT = f"rakka-provider-anthropic/{version('rakka-provider-anthropic')}"
except PackageNotFoundError:  # pragma: no cover - run from a source tree without metadata
    USER_AGENT = "rakka-provider-anthropic"


@dataclass(frozen=True, slots=True, kw_only=True)
class AnthropicDeployment(DeploymentConfig):
    """``provider: anthropic``: the Messages API (``POST {endpoint}/v1/messages``).

    ``default_max_tokens`` is sent when a request sets no ``max_tokens`` (the Messages API
    requires one). ``beta`` values go in the ``anthropic-beta`` header, comma-joined.
    """

    endpoint: str | None = ANTHROPIC_ENDPOINT
    anthropic_version: str = ANTHROPIC_VERSION
    default_max_tokens: int = 4096
    beta: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        DeploymentConfig.__post_init__(self)  # (slots=True classes cannot use super())
        if not self.endpoint and not self.embedded_emulator:
            raise ValueError("endpoint is required unless embedded_emulator is true")
        if self.default_max_tokens < 1:
            raise ValueError("default_max_tokens must be at least 1")
        if getattr(self.auth, "kind", "api_key") != "api_key":
            raise ValueError("the anthropic provider authenticates with api_key (x-api-key) only")


def messages_url(deployment: AnthropicDeployment, endpoint_override: str | None = None) -> str:
    """The Messages URL; ``endpoint_override`` (an embedded emulator) replaces the host."""
    base = (endpoint_override or deployment.endpoint or ANTHROPIC_ENDPOINT).rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return base + "/v1/messages"


def auth_headers(deployment: AnthropicDeployment, credential: Secret | None) -> Mapping[str, str]:
    """Every header a request sends, derived once per credential (the session snapshot)."""
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "anthropic-version": deployment.anthropic_version,
    }
    if deployment.beta:
        headers["anthropic-beta"] = ",".join(deployment.beta)
    if credential is not None:
        headers["x-api-key"] = credential.reveal()
    return headers
