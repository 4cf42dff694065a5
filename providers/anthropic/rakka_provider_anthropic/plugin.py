"""Entry point of the provider plugin (group ``rakka``, name ``anthropic``).

Registers the ``anthropic`` provider kind and the ``rakka anthropic-emulator`` command
through the hooks any third-party provider uses, importing nothing from the core but
:mod:`rakka_runtime.provider`, inside the hooks, and the package root's ``hookimpl`` marker
here: ``rakka --help`` loads this module, and the interface module would cost it a
quarter of its time.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from rakka_runtime import hookimpl

if TYPE_CHECKING:
    import click

    from rakka_provider_anthropic.codec import AnthropicCodec
    from rakka_provider_anthropic.deployment import AnthropicDeployment
    from rakka_runtime.provider import ProviderContext, ProviderRegistry

# Imports stay inside the hooks: `rakka --help` loads this module and should not pay for
# what it does not use.


def make_codec(deployment: AnthropicDeployment, context: ProviderContext) -> AnthropicCodec:
    from rakka_provider_anthropic.codec import AnthropicCodec
    from rakka_provider_anthropic.deployment import auth_headers

    session = context.open_session(partial(auth_headers, deployment))
    if not deployment.embedded_emulator:
        return AnthropicCodec(deployment)
    # An in-process emulator on an ephemeral loopback port, owned by the codec and stopped
    # with it; it accepts the deployment's key, if it has one.
    from rakka_provider_anthropic.emulator import Emulator

    credential = session.snapshot.credential
    emulator = Emulator(
        keys=None if credential is None else [credential.reveal()],
        model=deployment.model,
        # Limits far above what one process sends: the rate-limit policy learns from the
        # anthropic-ratelimit-* headers and must not be the bottleneck of a local run.
        requests_per_minute=1_000_000,
        input_tokens_per_minute=1_000_000_000,
        output_tokens_per_minute=1_000_000_000,
    ).start()
    return AnthropicCodec(deployment, endpoint_override=emulator.url, on_close=emulator.stop)


@hookimpl
def rakka_register_providers(registry: ProviderRegistry) -> None:
    from rakka_provider_anthropic.deployment import AnthropicDeployment

    registry.register("anthropic", AnthropicDeployment, make_codec)


@hookimpl
def rakka_register_commands(cli: click.Group) -> None:
    import click

    @cli.command(
        "anthropic-emulator",
        context_settings={"ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def anthropic_emulator_command(args: tuple[str, ...]) -> None:
        """Run the bundled Anthropic Messages API emulator (`--help` for its options)."""
        from rakka_provider_anthropic.emulator import main

        raise SystemExit(main(list(args)))
