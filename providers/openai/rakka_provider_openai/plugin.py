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
    from rakka_runtime.provider import DeploymentConfig, ProviderContext, ProviderRegistry

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

    # A click command like the others (Usage/Options help); the emulator itself stays
    # dependency-free (argparse) for `python -m rakka_provider_openai.emulator`.
    @cli.command("emulator")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
    @click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=8080,
        show_default=True,
        help="Port to listen on (0: any free port).",
    )
    @click.option(
        "--key",
        "keys",
        multiple=True,
        metavar="KEY",
        help="An accepted API key (repeatable; default: accept any key).",
    )
    @click.option(
        "--key-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="A file holding the accepted key, re-read when it changes.",
    )
    @click.option(
        "--key-grace",
        type=float,
        default=1.0,
        show_default=True,
        metavar="SECONDS",
        help="How long a rotated-out key stays valid.",
    )
    @click.option(
        "--scenario",
        type=click.Path(dir_okay=False),
        default=None,
        help="A YAML or JSON file of fault rules.",
    )
    @click.option("--model", default="gpt-4o-mini", show_default=True, help="Model to report.")
    @click.option(
        "--chunk-delay",
        type=float,
        default=0.0,
        show_default=True,
        metavar="SECONDS",
        help="Pause between streamed chunks.",
    )
    @click.option("--rpm", type=int, default=10_000, show_default=True, help="Requests per minute.")
    @click.option(
        "--tpm", type=int, default=10_000_000, show_default=True, help="Tokens per minute."
    )
    @click.option(
        "--enforce-limits",
        is_flag=True,
        help="Answer 429 when the requests or tokens bucket is empty (else only report).",
    )
    def emulator_command(
        host: str,
        port: int,
        keys: tuple[str, ...],
        key_file: str | None,
        key_grace: float,
        scenario: str | None,
        model: str,
        chunk_delay: float,
        rpm: int,
        tpm: int,
        enforce_limits: bool,
    ) -> None:
        """Serve the bundled OpenAI / Azure OpenAI compatible emulator until Ctrl-C.

        OpenAI clients use http://HOST:PORT/v1; Azure clients use http://HOST:PORT as the
        endpoint. Faults are chosen per request with the x-emulator-fault header or a
        --scenario file.
        """
        from rakka_provider_openai.emulator import main

        argv = ["--host", host, "--port", str(port), "--key-grace", str(key_grace)]
        for key in keys:
            argv += ["--key", key]
        if key_file is not None:
            argv += ["--key-file", key_file]
        if scenario is not None:
            argv += ["--scenario", scenario]
        argv += ["--model", model, "--chunk-delay", str(chunk_delay)]
        argv += ["--rpm", str(rpm), "--tpm", str(tpm)]
        if enforce_limits:
            argv.append("--enforce-limits")
        raise SystemExit(main(argv))
