"""``rakka config show``: the composed config, secrets as references."""

from __future__ import annotations

import click

from rakka_runtime.cli.common import config_dir_option, fail


@click.group("config")
def config_group() -> None:
    """Inspect the composed configuration."""


@config_group.command("show")
@click.argument("overrides", nargs=-1)
@config_dir_option
def config_show(overrides: tuple[str, ...], config_dir: str | None) -> None:
    """Print the composed config as YAML (secrets appear as references, never values)."""
    from rakka_runtime.config.loader import dump_config_yaml, load_config
    from rakka_runtime.errors import ConfigError
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.runtime import resolve_deployment

    try:
        config = load_config(list(overrides), config_dir=config_dir)
        resolve_deployment(config, PluginHooks())
    except ConfigError as exc:
        fail(f"config: {exc}")
    click.echo(dump_config_yaml(config), nl=False)
