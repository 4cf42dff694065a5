"""Deployment config of the ``openai`` and ``azure`` provider kinds, and what follows from it.

The variant mirrors the seed crate's ``OpenAiConfig``: ``direct`` (api.openai.com or any
OpenAI-compatible endpoint) or ``azure`` (resource + deployment + api-version, with an
optional endpoint override for proxies, sovereign clouds and emulators).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from rakka_runtime import __version__
from rakka_runtime.config.checks import Endpoint, HeaderText, quote_value
from rakka_runtime.config.schema import ConfigModel, DeploymentConfig, EntraAuth
from rakka_runtime.secret_value import Secret, SecretHeader

USER_AGENT = f"rakka-runtime/{__version__}"
OPENAI_ENDPOINT = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectVariant(ConfigModel):
    kind: Literal["direct"] = "direct"
    endpoint: Endpoint | None = OPENAI_ENDPOINT


@dataclass(frozen=True, slots=True, kw_only=True)
class AzureVariant(ConfigModel):
    kind: Literal["azure"] = "azure"
    # The host label of https://<resource>.openai.azure.com: a DNS label, nothing else.
    resource: str | None = field(
        default=None, metadata={"pattern": r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"}
    )
    deployment: str
    api_version: str = "2024-10-21"
    endpoint: Endpoint | None = None

    def __post_init__(self) -> None:
        if not self.resource and not self.endpoint:
            raise ValueError("an azure variant needs `resource` or an `endpoint` override")


Variant = DirectVariant | AzureVariant
"""Told apart by ``kind``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAIDeployment(DeploymentConfig):
    """``provider: openai``: direct by default; the seed's Azure variant is accepted too."""

    variant: Variant = field(default_factory=DirectVariant, metadata={"discriminator": "kind"})
    organization: HeaderText | None = None
    project: HeaderText | None = None

    def __post_init__(self) -> None:
        DeploymentConfig.__post_init__(self)  # (slots=True classes cannot use super())
        variant = self.variant
        if self.embedded_emulator and variant.endpoint not in (None, OPENAI_ENDPOINT):
            # (The default endpoint is what a deployment without a variant gets.)
            raise ValueError(
                "embedded_emulator starts its own server and would ignore variant.endpoint "
                f"{quote_value(variant.endpoint)}: set variant.endpoint: null, or "
                "embedded_emulator: false to use that endpoint"
            )
        if (
            isinstance(variant, DirectVariant)
            and not variant.endpoint
            and not self.embedded_emulator
        ):
            raise ValueError("variant.endpoint is required unless embedded_emulator is true")


@dataclass(frozen=True, slots=True, kw_only=True)
class AzureDeployment(DeploymentConfig):
    """``provider: azure``: the deployment name in the URL decides the model."""

    variant: AzureVariant


def chat_url(variant: DirectVariant | AzureVariant, endpoint_override: str | None = None) -> str:
    """The chat-completions URL; ``endpoint_override`` replaces the configured host."""
    if isinstance(variant, DirectVariant):
        base = endpoint_override or variant.endpoint or OPENAI_ENDPOINT
        return base.rstrip("/") + "/chat/completions"
    base = endpoint_override or variant.endpoint or f"https://{variant.resource}.openai.azure.com"
    base = base.rstrip("/")
    if not base.endswith("/openai"):
        base += "/openai"
    return (
        f"{base}/deployments/{quote(variant.deployment, safe='')}/chat/completions"
        f"?api-version={quote(variant.api_version, safe='')}"
    )


def auth_headers(deployment: DeploymentConfig, credential: Secret | None) -> Mapping[str, str]:
    """Every header a request sends, derived once per credential (the session snapshot)."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    variant = getattr(deployment, "variant", None)
    # An Entra ID token goes in Authorization on Azure too; api-key is for keys only.
    entra = isinstance(deployment.auth, EntraAuth)
    if isinstance(variant, AzureVariant):
        if credential is not None:
            if entra:
                headers["Authorization"] = SecretHeader(f"Bearer {credential.reveal()}")
            else:
                headers["api-key"] = SecretHeader(credential.reveal())
    else:
        if credential is not None:
            headers["Authorization"] = SecretHeader(f"Bearer {credential.reveal()}")
        organization = getattr(deployment, "organization", None)
        project = getattr(deployment, "project", None)
        if organization:
            headers["OpenAI-Organization"] = organization
        if project:
            headers["OpenAI-Project"] = project
    return headers
