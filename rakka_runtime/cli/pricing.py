"""``rakka pricing``: the effective price table, with rows that differ from the published
list marked, and what the deployment's requests will be priced at."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from rakka_runtime.cli.common import config_dir_option, fail

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig
    from rakka_runtime.pricing import ModelRates, PriceTable


@click.command("pricing")
@click.argument("overrides", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--all", "show_all", is_flag=True, help="Also list rows that come only from pricing.sources."
)
@config_dir_option
def pricing_command(
    overrides: tuple[str, ...], as_json: bool, show_all: bool, config_dir: str | None
) -> None:
    """Show the prices (USD per 1M tokens) in effect for the composed config.

    Rows an env file, an override, a price file or deployment.pricing changed relative to
    the published table are marked; a deployment whose model has no row is priced as
    "unknown" (its requests report no cost rather than $0).

    `rakka pricing diff FILE [OVERRIDES]...` compares the table's rows with a LiteLLM price
    file (model_prices_and_context_window.json): rates that differ, rows the file lacks,
    and OpenAI / Azure chat models the table lacks. Exit 0: no difference, 1: differences.
    """
    if overrides[:1] == ("diff",):
        if len(overrides) < 2:
            fail("usage: rakka pricing diff FILE [OVERRIDES]...")
        _diff(overrides[1], overrides[2:], as_json, config_dir)
        return
    from rakka_runtime.config.loader import load_config
    from rakka_runtime.errors import ConfigError
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.pricing import PriceTable, price_table_for
    from rakka_runtime.runtime import resolve_deployment

    try:
        config = load_config(list(overrides), config_dir=config_dir)
        # The provider's own deployment class: how it is hosted can decide its prices.
        _, deployment = resolve_deployment(config, PluginHooks())
        table = price_table_for(config.pricing, deployment)
    except ConfigError as exc:
        fail(f"config: {exc}")
    published = PriceTable.published().scoped(deployment.price_namespace)
    # Rows from source files alone are many (LiteLLM lists thousands), and so are the rows
    # of hosting types (azure/<type>/...) whose models a deployment sees under their plain
    # names: listed on request.
    configured = set(config.pricing.models) | {deployment.priced_model}
    everything = table.models()
    rows = [
        _row(name, rates, table, published)
        for name, rates in sorted(everything.items())
        if show_all or (name in configured and "/" not in name)
    ]
    hosting = 0 if show_all else sum(1 for n in everything if n in configured and "/" in n)
    report = {
        "as_of": table.as_of,
        "price_namespace": deployment.price_namespace,
        "currency": table.currency,
        "env": config.env.name,
        "deployment": _deployment(deployment, table),
        "models": rows,
        "hidden_source_rows": len(everything) - len(rows) - hosting,
        "hidden_hosting_rows": hosting,
    }
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print(report)


def _diff(path: str, overrides: tuple[str, ...], as_json: bool, config_dir: str | None) -> None:
    from dataclasses import asdict

    from rakka_runtime.cli.common import EXIT_FAILED
    from rakka_runtime.config.loader import load_config
    from rakka_runtime.errors import ConfigError
    from rakka_runtime.pricing import PriceTable, diff_with_litellm

    try:
        config = load_config(list(overrides), config_dir=config_dir)
        rows = {name: asdict(row) for name, row in config.pricing.models.items()}
        diff = diff_with_litellm(PriceTable.from_config(rows).models(), path)
    except ConfigError as exc:
        fail(f"config: {exc}")
    if as_json:
        click.echo(json.dumps({"as_of": str(config.pricing.as_of), "file": path, **diff.as_dict()}))
    else:
        click.echo(
            f"Price table (as of {config.pricing.as_of}, env {config.env.name}) vs {path}, "
            "USD per 1M tokens"
        )
        click.echo(f"same: {diff.same} rows")
        click.echo(f"changed: {len(diff.changed)} rows")
        for change in diff.changed:
            parts = ", ".join(
                f"{name} {_rate(ours)} -> {_rate(theirs)}"
                for name, (ours, theirs) in change.fields.items()
            )
            via = "" if change.file_key == change.model else f" (file: {change.file_key})"
            click.echo(f"  {change.model}{via}: {parts}")
        click.echo(f"only in the table: {len(diff.only_in_table)} rows")
        for name in diff.only_in_table:
            click.echo(f"  {name}")
        click.echo(f"only in the file (OpenAI and Azure chat models): {len(diff.only_in_file)}")
        for name in diff.only_in_file:
            click.echo(f"  {name}")
    if diff.differs:
        raise SystemExit(EXIT_FAILED)


def _row(name: str, rates: ModelRates, table: PriceTable, published: PriceTable) -> dict[str, Any]:
    listed = published.models().get(name)
    status = "published" if listed == rates else "added" if listed is None else "overridden"
    return {
        "model": name,
        "input": rates.input,
        "cached_input": rates.cached_input,
        "output": rates.output,
        "status": status,
        "source": table.source(name),
    }


def _deployment(deployment: DeploymentConfig, table: PriceTable) -> dict[str, Any]:
    model = deployment.priced_model
    rates = table.get(model)
    return {
        "name": deployment.name,
        "priced_model": model,
        "row": table.key(model),
        "price": "unknown" if rates is None else "known",
        "input": None if rates is None else rates.input,
        "cached_input": None if rates is None else rates.cached_input,
        "output": None if rates is None else rates.output,
    }


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _published_path() -> str:
    """Where the published table is read from: the repository's conf/ in a checkout, the
    installed package's conf/ for a wheel (never a path the user does not have)."""
    from rakka_runtime.config.loader import builtin_conf_dir

    return str(builtin_conf_dir() / "pricing" / "published.yaml")


def _print(report: dict[str, Any]) -> None:
    currency = report["currency"]
    click.echo(f"Prices in {currency} per 1M tokens, as of {report['as_of']} (env {report['env']})")
    dep = report["deployment"]
    if dep["price"] == "unknown":
        price = "unknown: no price row, so its requests report cost as unknown"
    else:
        via = "" if dep["row"] == dep["priced_model"] else f" (row {dep['row']})"
        price = (
            f"input {_rate(dep['input'])}, cached input {_rate(dep['cached_input'])}, "
            f"output {_rate(dep['output'])}{via}"
        )
    if report.get("price_namespace"):
        price += f"; priced from the {report['price_namespace']}/ rows"
    click.echo(f"deployment {dep['name']}: {dep['priced_model']} → {price}")
    click.echo("")
    header = ("  MODEL", "INPUT", "CACHED", "OUTPUT", "STATUS", "SOURCE")
    lines = [
        (
            ("* " if row["status"] != "published" else "  ") + row["model"],
            _rate(row["input"]),
            _rate(row["cached_input"]),
            _rate(row["output"]),
            row["status"],
            row["source"] or "",
        )
        for row in report["models"]
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]
    for cells in (header, *lines):
        text = "  ".join(
            cell.rjust(width) if 1 <= i <= 3 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        click.echo(text.rstrip())
    click.echo("")
    click.echo(f"* differs from the published table ({_published_path()})")
    hidden = report["hidden_source_rows"]
    if hidden:
        click.echo(f"{hidden} more rows from pricing.sources; --all lists them")
    hosting = report["hidden_hosting_rows"]
    if hosting:
        click.echo(
            f"{hosting} rows priced by hosting type (azure/<deployment_type>/<model>); "
            "--all lists them"
        )
