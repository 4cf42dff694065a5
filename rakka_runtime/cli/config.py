"""``rakka config show`` and ``rakka config compile``: the composed config, secrets as
references."""

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
    from rakka_runtime.runtime import resolve_deployment, resolve_deployments

    try:
        config = load_config(list(overrides), config_dir=config_dir)
        hooks = PluginHooks()
        resolve_deployment(config, hooks)
        resolve_deployments(config, hooks)
    except ConfigError as exc:
        fail(f"config: {exc}")
    click.echo(dump_config_yaml(config), nl=False)


@config_group.command("compile")
@click.argument("overrides", nargs=-1)
@config_dir_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="Where to write the compiled config (- for stdout).",
)
def config_compile(overrides: tuple[str, ...], config_dir: str | None, output: str) -> None:
    """Compose and validate the config once and write it as JSON with a digest, for
    `Runtime.from_compiled()` and `--compiled`: they run without Hydra or pydantic."""
    import json

    from rakka_runtime.config.compiled import compile_config, write_compiled
    from rakka_runtime.config.loader import load_config
    from rakka_runtime.errors import ConfigError
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.runtime import resolve_deployment, resolve_deployments

    try:
        config = load_config(list(overrides), config_dir=config_dir)
        hooks = PluginHooks()
        _, deployment = resolve_deployment(config, hooks)
        named = (
            {name: item for name, (_, item) in resolve_deployments(config, hooks).items()}
            if config.routed
            else None
        )
        compiled = compile_config(config, deployment, named)
    except ConfigError as exc:
        fail(f"config: {exc}")
    if output == "-":
        click.echo(json.dumps(compiled, indent=2, ensure_ascii=False))
        return
    try:
        write_compiled(compiled, output)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    # On stderr, like rakka chat's summary: stdout stays free for the JSON form (-o -).
    click.echo(
        f"wrote {output}: deployment {deployment.name} ({deployment.provider} · "
        f"{deployment.model}), env {config.env.name}, digest {compiled['digest']}",
        err=True,
    )
