"""Entry point of the provider plugin (group ``rakka``, name ``openai``).

Registers the ``openai`` and ``azure`` provider kinds and the ``rakka emulator`` command,
through the same hooks any third-party provider would use.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from rakka_runtime import hookimpl

if TYPE_CHECKING:
    import click

    from rakka_provider_openai.codec import OpenAICodec
    from rakka_provider_openai.deployment import (
        AzureDeployment,
        AzureVariant,
        DirectVariant,
        OpenAIDeployment,
    )
    from rakka_runtime.config.schema import DeploymentConfig
    from rakka_runtime.provider import ProviderContext
    from rakka_runtime.registry import ProviderRegistry

# Imports stay inside the hooks: `rakka --help` loads this module, and should not pay
# for pydantic models or the emulator it does not use.


def make_openai_codec(deployment: OpenAIDeployment, context: ProviderContext) -> OpenAICodec:
    return _codec(deployment, deployment.variant, context)


def make_azure_codec(deployment: AzureDeployment, context: ProviderContext) -> OpenAICodec:
    return _codec(deployment, deployment.variant, context)


def _codec(
    deployment: DeploymentConfig, variant: DirectVariant | AzureVariant, context: ProviderContext
) -> OpenAICodec:
    from rakka_provider_openai.codec import OpenAICodec
    from rakka_provider_openai.deployment import AzureVariant, auth_headers

    session = context.open_session(partial(auth_headers, deployment))
    if not deployment.embedded_emulator:
        return OpenAICodec(deployment, variant)
    # The default `local` deployment: an in-process emulator on an ephemeral loopback port,
    # owned by this codec and stopped with it.
    from rakka_provider_openai.emulator import Emulator

    credential = session.snapshot.credential
    # Limits far above what one process sends: the emulator reports them in x-ratelimit-*
    # headers and the rate-limit policy learns from those.
    emulator = Emulator(
        keys=None if credential is None else [credential.reveal()],
        requests_per_minute=1_000_000,
        tokens_per_minute=1_000_000_000,
    ).start()
    azure = isinstance(variant, AzureVariant)
    return OpenAICodec(
        deployment,
        variant,
        endpoint_override=emulator.url if azure else emulator.url + "/v1",
        on_close=emulator.stop,
    )


@hookimpl
def rakka_register_providers(registry: ProviderRegistry) -> None:
    from rakka_provider_openai.deployment import AzureDeployment, OpenAIDeployment

    registry.register("openai", OpenAIDeployment, make_openai_codec)
    registry.register("azure", AzureDeployment, make_azure_codec)


@hookimpl
def rakka_register_commands(cli: click.Group) -> None:
    import click

    @cli.command(
        "emulator",
        context_settings={"ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def emulator_command(args: tuple[str, ...]) -> None:
        """Run the bundled OpenAI/Azure-compatible emulator (see `rakka emulator --help`)."""
        from rakka_provider_openai.emulator import main

        raise SystemExit(main(list(args)))
