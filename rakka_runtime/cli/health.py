"""``rakka health``: each deployment's health as the router sees it (breaker state, 429
pause, rate-limit headroom, load and latency averages). With the Redis backends the
breaker and the pause are the fleet's."""

from __future__ import annotations

import json
from typing import Any

import click

from rakka_runtime.cli.common import compiled_option, config_dir_option, open_runtime


@click.command("health")
@click.argument("overrides", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per deployment.")
@config_dir_option
@compiled_option
def health_command(
    overrides: tuple[str, ...], as_json: bool, config_dir: str | None, compiled: str | None
) -> None:
    """Show every deployment's breaker, pause, headroom and latency averages."""
    runtime = open_runtime(overrides, config_dir, compiled)
    with runtime:
        groups: dict[str, list[str]] = {}
        for name, route in runtime.router.routes.items():
            if route.members != (name,):
                for member in route.members:
                    groups.setdefault(member, []).append(name)
        rows: list[dict[str, Any]] = []
        for item in runtime.router.health():
            core = runtime.cores[item.name]
            rows.append(
                {
                    "deployment": item.name,
                    "provider": core.deployment.provider,
                    "model": core.deployment.model,
                    "groups": groups.get(item.name, []),
                    "breaker": item.breaker,
                    "healthy": item.healthy,
                    "unavailable_for_s": round(item.unavailable_for, 3),
                    "why": item.why or None,
                    "headroom": round(item.headroom, 4),
                    "in_flight": item.in_flight,
                    "ttft_ms_avg": _round(item.ttft_ms),
                    "latency_ms_avg": _round(item.latency_ms),
                }
            )
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    header = ("DEPLOYMENT", "MODEL", "GROUPS", "BREAKER", "PAUSE/WAIT", "HEADROOM", "LATENCY")
    lines = [header]
    for row in rows:
        wait = f"{row['unavailable_for_s']:.1f}s ({row['why']})" if row["why"] else "-"
        latency = "-" if row["latency_ms_avg"] is None else f"{row['latency_ms_avg']:.0f} ms"
        lines.append(
            (
                str(row["deployment"]),
                str(row["model"]),
                ",".join(row["groups"]) or "-",
                str(row["breaker"]),
                wait,
                f"{100 * row['headroom']:.0f}%",
                latency,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
