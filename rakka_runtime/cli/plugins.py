"""``rakka plugins``: what is registered, the hooks each implements, the provider kinds."""

from __future__ import annotations

import json

import click


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True)
def plugins_command(as_json: bool) -> None:
    """List plugins, the hooks each implements, and the provider kinds."""
    from rakka_runtime.plugins import PluginHooks

    hooks = PluginHooks()
    infos = hooks.describe()
    kinds = {p.kind: p.plugin for p in hooks.providers}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "plugins": [
                        {"name": i.name, "source": i.source, "hooks": list(i.hooks)} for i in infos
                    ],
                    "providers": kinds,
                }
            )
        )
        return
    for info in infos:
        click.echo(f"{info.name}  [{info.source}]")
        for hook in info.hooks:
            click.echo(f"    {hook}")
    click.echo("provider kinds:")
    for kind, plugin in sorted(kinds.items()):
        click.echo(f"    {kind}  (from {plugin})")
