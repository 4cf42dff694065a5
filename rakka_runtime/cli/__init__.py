"""The ``rakka`` command line: a thin shell over :class:`rakka_runtime.runtime.Runtime`.

Exit codes: 0 success, 1 the request failed (a classified error), 2 bad input (config,
usage, request). Each subcommand lives in its own module and is imported only when it
is run (or listed), so ``rakka --help`` stays fast; plugins add commands through the
``rakka_register_commands`` hook.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import click

# name -> "module:attribute" of the built-in subcommands.
BUILTIN_COMMANDS: dict[str, str] = {
    "batch": "rakka_runtime.cli.batch:batch",
    "chat": "rakka_runtime.cli.chat:chat",
    "config": "rakka_runtime.cli.config:config_group",
    "health": "rakka_runtime.cli.health:health_command",
    "plugins": "rakka_runtime.cli.plugins:plugins_command",
    "pricing": "rakka_runtime.cli.pricing:pricing_command",
}


class RakkaGroup(click.Group):
    """Loads built-in and plugin commands lazily."""

    _plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from rakka_runtime.plugins import PluginHooks, make_plugin_manager

        # The built-in plugins are policies and add no command (a test keeps it so):
        # loading them would import every policy module just to list the commands.
        PluginHooks(make_plugin_manager(builtins=False)).register_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(set(super().list_commands(ctx)) | set(BUILTIN_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = BUILTIN_COMMANDS.get(cmd_name)
        if target is not None:
            module, _, attribute = target.partition(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        found = super().get_command(ctx, cmd_name)
        if found is None:
            self._load_plugin_commands()
            found = super().get_command(ctx, cmd_name)
        return found


@click.group(cls=RakkaGroup)
@click.version_option(package_name="rakka-runtime")
def cli() -> None:
    """rakka: call OpenAI and Azure OpenAI through composed deployments and policies.

    Overrides use Hydra syntax, e.g. `deployment=azure deployment.model=gpt-4o`.
    """


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="rakka")
