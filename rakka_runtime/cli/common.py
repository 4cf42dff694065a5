"""What every ``rakka`` command shares: exit codes, the config-dir option, error exits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from rakka_runtime.runtime import Runtime

EXIT_FAILED = 1  # the request failed with a classified error
EXIT_BAD_INPUT = 2  # bad config, usage or request: nothing was sent

config_dir_option = click.option(
    "--config-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="A folder of config files that overlays the built-in conf/.",
)


compiled_option = click.option(
    "--compiled",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Run from a compiled config (`rakka config compile`) instead of composing conf/.",
)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one ``error: ...`` line on stderr and exit (no traceback)."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def open_runtime(
    overrides: Sequence[str], config_dir: str | None, compiled: str | None = None
) -> Runtime:
    """Compose, validate and build the runtime (or load ``compiled``); a config problem
    exits 2."""
    from rakka_runtime.errors import ConfigError
    from rakka_runtime.runtime import Runtime

    if compiled is not None and (overrides or config_dir):
        fail("--compiled takes no overrides or --config-dir: compile them in")
    try:
        if compiled is not None:
            return Runtime.from_compiled(compiled)
        return Runtime.from_overrides(list(overrides), config_dir=config_dir)
    except ConfigError as exc:
        fail(f"config: {exc}")
