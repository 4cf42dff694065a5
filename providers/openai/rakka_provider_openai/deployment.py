"""Deployment config of the ``openai`` and ``azure`` provider kinds, and what follows from it.

The variant mirrors the seed crate's ``OpenAiConfig``: ``direct`` (api.openai.com or any
OpenAI-compatible endpoint) or ``azure`` (resource + deployment + api-version, with an
optional endpoint override for proxies, sovereign clouds and emulators).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, urlsplit

from rakka_runtime.provider import (
    ConfigModel,
    DeploymentConfig,
    Endpoint,
    EntraAuth,
    HeaderText,
    Secret,
    SecretHeader,
    __version__,
    quote_value,
)

USER_AGENT = f"rakka-runtime/{__version__}"
OPENAI_ENDPOINT = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectVariant(ConfigModel):
    kind: Literal["direct"] = "direct"
    endpoint: Endpoint | None = OPENAI_ENDPOINT


AzureDeploymentType = Literal["global", "data_zone", "regional"]


def azure_price_namespace(variant: object) -> str | None:
    """``azure/<deployment_type>`` for an Azure variant: its rows price the deployment."""
    if isinstance(variant, AzureVariant):
        return f"azure/{variant.deployment_type}"
    return None


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
    # How the Azure deployment is hosted, which decides its price: Global (any Azure
    # region), Data Zone (the US or EU zone; 10% above Global) or Regional (one region).
    deployment_type: AzureDeploymentType = "global"

    def __post_init__(self) -> None:
        if not self.resource and not self.endpoint:
            raise ValueError("an azure variant needs `resource` or an `endpoint` override")


Variant = DirectVariant | AzureVariant
"""Told apart by ``kind``."""

MaxTokensParam = Literal["auto", "max_tokens", "max_completion_tokens"]
"""Which request field carries a request's ``max_tokens`` (see :func:`completion_limit_key`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAIDeployment(DeploymentConfig):
    """``provider: openai``: direct by default; the seed's Azure variant is accepted too."""

    variant: Variant = field(default_factory=DirectVariant, metadata={"discriminator": "kind"})
    organization: HeaderText | None = None
    project: HeaderText | None = None
    # How a request's max_tokens is sent: "auto" (see completion_limit_key), or a field name
    # for an OpenAI-compatible server that accepts only that one.
    max_tokens_param: MaxTokensParam = "auto"

    @property
    def price_namespace(self) -> str | None:
        return azure_price_namespace(self.variant)

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
    max_tokens_param: MaxTokensParam = "auto"

    @property
    def price_namespace(self) -> str | None:
        return azure_price_namespace(self.variant)


_DATED_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
# Azure added max_completion_tokens (and deprecated max_tokens) with the o1 models in
# 2024-09-01-preview; every later preview and GA version (2024-10-21 on) accepts it.
AZURE_MAX_COMPLETION_TOKENS_SINCE = "2024-09-01"


def azure_accepts_max_completion_tokens(api_version: str) -> bool:
    """Whether an Azure OpenAI ``api-version`` knows ``max_completion_tokens``.

    Dated versions (``2024-10-21``, ``2025-04-01-preview``) from 2024-09-01 on do; older
    ones only know ``max_tokens``. Undated ones (``v1``, ``latest``, ``preview``: the v1
    API) are newer than every dated version.
    """
    dated = _DATED_API_VERSION.match(api_version.strip())
    if dated is None:
        return True
    return dated.group(0) >= AZURE_MAX_COMPLETION_TOKENS_SINCE


def is_openai_endpoint(endpoint: str | None) -> bool:
    """api.openai.com, or one of its regional hosts (``eu.api.openai.com``)."""
    if not endpoint:
        return False
    host = (urlsplit(endpoint).hostname or "").lower()
    return host == "api.openai.com" or host.endswith(".api.openai.com")


def completion_limit_key(deployment: DeploymentConfig) -> str | None:
    """The body field for a request's ``max_tokens`` on this deployment, decided once.

    ``max_tokens_param`` set to a field name wins. ``auto``: OpenAI (and the bundled
    emulator, which behaves like it) always gets ``max_completion_tokens``, since the
    published spec deprecates ``max_tokens`` for chat and newer models reject it; Azure
    gets it when its ``api_version`` knows it (:func:`azure_accepts_max_completion_tokens`),
    else ``max_tokens``. Any other OpenAI-compatible endpoint returns ``None``: the body
    builder then sends ``max_tokens``, which such servers accept, except for a model named
    as one of OpenAI's reasoning families (a proxy in front of OpenAI).
    """
    setting = getattr(deployment, "max_tokens_param", "auto")
    if setting != "auto":
        return str(setting)
    variant = getattr(deployment, "variant", None)
    if isinstance(variant, AzureVariant):
        if azure_accepts_max_completion_tokens(variant.api_version):
            return "max_completion_tokens"
        return "max_tokens"
    endpoint = variant.endpoint if isinstance(variant, DirectVariant) else None
    if deployment.embedded_emulator or is_openai_endpoint(endpoint):
        return "max_completion_tokens"
    return None


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
