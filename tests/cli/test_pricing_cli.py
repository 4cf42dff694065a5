"""`rakka pricing`: the effective table, overridden rows marked.

Run in-process through click's runner (the command's real code, config and files); the
subprocess path of `rakka` itself is covered by tests/cli/test_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from rakka_runtime.cli import cli


def rakka(*args: str) -> Result:
    return CliRunner().invoke(cli, ["pricing", *args])


def rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["model"]: row for row in doc["models"]}


def test_text_marks_the_rows_env_prod_changed() -> None:
    out = rakka("env=prod")
    assert out.exit_code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Prices in USD per 1M tokens, as of 2026-12-07 (env prod)"
    assert lines[1] == "deployment local: gpt-4o-mini → input 0.12, cached input 0.06, output 0.48"
    marked = [line for line in lines if line.startswith("* ") and "published table" not in line]
    assert len(marked) == 1 and marked[0].split()[1:] == [
        "gpt-4o-mini", "0.12", "0.06", "0.48", "overridden", "negotiated",
    ]  # fmt: skip
    assert any(line.split()[:4] == ["gpt-4-turbo", "10.00", "-", "30.00"] for line in lines)


def test_json_with_a_deployment_override_and_a_litellm_file(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "acme-chat": {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06},
                "gpt-4o": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
            }
        ),
        encoding="utf-8",
    )
    out = rakka(
        "--json",
        f"pricing.sources=['{prices}']",
        "deployment.model=gpt-4.1",
        "+deployment.pricing={output: 6.0}",
    )
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["deployment"] == {
        "name": "local", "priced_model": "gpt-4.1", "row": "gpt-4.1", "price": "known",
        "input": 2.0, "cached_input": 0.5, "output": 6.0,
    }  # fmt: skip
    table = rows(doc)
    assert table["gpt-4.1"]["status"] == "overridden"
    assert table["gpt-4.1"]["source"] == "deployment.pricing (local)"
    assert table["gpt-4o"] == {
        "model": "gpt-4o", "input": 2.5, "cached_input": 1.25, "output": 10.0,
        "status": "published", "source": "litellm",
    }  # config wins over the file  # fmt: skip
    assert "acme-chat" not in table and doc["hidden_source_rows"] == 1
    everything = json.loads(rakka("--json", "--all", f"pricing.sources=['{prices}']").stdout)
    assert rows(everything)["acme-chat"]["status"] == "added"
    assert rows(everything)["acme-chat"]["source"] == f"litellm:{prices}"


def test_a_model_without_a_price_is_unknown() -> None:
    out = rakka("deployment.model=acme-finetune")
    assert out.exit_code == 0, out.stderr
    assert "deployment local: acme-finetune → unknown" in out.stdout
    doc = json.loads(rakka("--json", "deployment.model=acme-finetune").stdout)
    assert doc["deployment"]["price"] == "unknown" and doc["deployment"]["input"] is None


def test_bad_price_file_exits_2() -> None:
    out = rakka("pricing.sources=['/nonexistent/prices.json']")
    assert out.exit_code == 2
    assert out.stderr.startswith("error: config: pricing.sources: cannot read")


# --- Azure deployment types --------------------------------------------------------------


def test_azure_deployment_types_are_priced_differently() -> None:
    def priced(kind: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
        args = ["--json", "deployment=azure", f"deployment.base_model={model}"]
        out = rakka(*args, f"deployment.variant.deployment_type={kind}")
        assert out.exit_code == 0, out.output
        dep: dict[str, Any] = json.loads(out.stdout)["deployment"]
        return dep

    world, zone, region = priced("global"), priced("data_zone"), priced("regional")
    assert (world["input"], world["output"]) == (0.15, 0.60)
    assert (zone["input"], zone["output"]) == (0.165, 0.66)  # Data Zone above Global
    assert zone["input"] > world["input"] and region["output"] >= zone["output"]
    # Azure o1-mini at its current price, not its launch price.
    o1 = priced("global", "o1-mini")
    assert (o1["input"], o1["cached_input"], o1["output"]) == (1.10, 0.55, 4.40)
    # A model without a Data Zone row is unknown there, never priced at the Global rate.
    assert priced("data_zone", "gpt-3.5-turbo")["price"] == "unknown"
    assert priced("global", "gpt-3.5-turbo")["price"] == "known"  # the list price


def test_an_unknown_deployment_type_is_refused() -> None:
    out = rakka("deployment=azure", "deployment.variant.deployment_type=worldwide")
    assert out.exit_code == 2
    assert "deployment.variant" in out.output and "deployment_type" in out.output


# --- rakka pricing diff -------------------------------------------------------------------


def _litellm_file(tmp_path: Path, entries: dict[str, Any]) -> Path:
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(json.dumps({"sample_spec": {"input_cost_per_token": 0.0}, **entries}))
    return path


def _entry(provider: str, prompt: float, completion: float, cached: float | None = None) -> Any:
    entry = {
        "litellm_provider": provider,
        "mode": "chat",
        "input_cost_per_token": prompt / 1e6,
        "output_cost_per_token": completion / 1e6,
    }
    if cached is not None:
        entry["cache_read_input_token_cost"] = cached / 1e6
    return entry


def test_diff_lists_changed_missing_and_new_rows(tmp_path: Path) -> None:
    path = _litellm_file(
        tmp_path,
        {
            "gpt-4o": _entry("openai", 2.5, 10.0, 1.25),  # same
            "gpt-4o-mini": _entry("openai", 0.15, 0.70, 0.075),  # output changed
            "azure/us/o1-mini": _entry("azure", 1.21, 4.84, 0.605),  # Data Zone, same
            "gpt-9": _entry("openai", 1.0, 2.0),  # new
            "gpt-4o-2024-08-06": _entry("openai", 2.5, 10.0, 1.25),  # covered by its base
            "text-embedding-3-small": {"litellm_provider": "openai", "mode": "embedding"},
        },
    )
    out = rakka("diff", str(path), "--json")
    assert out.exit_code == 1, out.output
    doc = json.loads(out.stdout)
    assert doc["changed"] == [
        {
            "model": "gpt-4o-mini",
            "file_key": "gpt-4o-mini",
            "fields": {"output": {"table": 0.6, "file": 0.7}},
        }
    ]
    assert doc["only_in_file"] == ["gpt-9"]
    assert "gpt-4.1" in doc["only_in_table"] and "gpt-4o" not in doc["only_in_table"]
    assert "azure/data_zone/o1-mini" not in doc["only_in_table"]
    assert doc["same"] >= 2
    text = rakka("diff", str(path))
    assert "  gpt-4o-mini: output 0.60 -> 0.70" in text.stdout
    assert text.exit_code == 1


def test_diff_of_a_file_that_agrees_exits_0(tmp_path: Path) -> None:
    from rakka_runtime.pricing import PriceTable

    entries: dict[str, Any] = {}
    for name, rates in PriceTable.published().models().items():
        provider, key = "openai", name
        for ours, theirs in (("azure/global/", "azure/"), ("azure/data_zone/", "azure/us/")):
            if name.startswith(ours):
                provider, key = "azure", theirs + name.removeprefix(ours)
        if name.startswith("azure/regional/"):
            continue  # priced at the Data Zone rate, compared with the azure/us/ entry
        entries[key] = _entry(provider, rates.input, rates.output, rates.cached_input)
    out = rakka("diff", str(_litellm_file(tmp_path, entries)))
    assert out.exit_code == 0, out.output
    assert "changed: 0 rows" in out.stdout and "only in the table: 0 rows" in out.stdout


def test_diff_needs_a_readable_file(tmp_path: Path) -> None:
    assert rakka("diff").exit_code == 2
    missing = rakka("diff", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "cannot read" in missing.output
