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
    assert lines[0] == "Prices in USD per 1M tokens, as of 2025-08-07 (env prod)"
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
