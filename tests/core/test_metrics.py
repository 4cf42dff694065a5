"""The metrics plugin: counted through the real runtime and emulator, scraped over HTTP
from the real /metrics endpoint, with bounded labels and without prometheus_client."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.cli import cli
from rakka_runtime.errors import ServerError
from rakka_runtime.metrics import (
    MAX_MODELS_PER_DEPLOYMENT,
    MetricsPlugin,
    metrics_snapshot,
    serve_metrics,
)
from rakka_runtime.metrics_store import MetricsStore, label_key
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.runtime import Runtime
from rakka_runtime.session import SessionSnapshot

# The conftest `make_runtime` fixture: builds a Runtime aimed at an emulator.
RuntimeFactory = Callable[..., Runtime]

USAGE = {"x-emulator-usage": json.dumps({"prompt_tokens": 1000, "cached_tokens": 200})}


@pytest.fixture
def store() -> MetricsStore:
    return MetricsStore()


@pytest.fixture
def hooks(store: MetricsStore) -> PluginHooks:
    """The shipped plugins, with the metrics plugin recording into a store of the test's."""
    plugin = MetricsPlugin(store)
    return PluginHooks(make_plugin_manager(disabled={"metrics"}, extra_plugins=[("m", plugin)]))


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_scraped_counters_match_the_requests_made(
    emulator: Emulator, make_runtime: RuntimeFactory, hooks: PluginHooks, store: MetricsStore
) -> None:
    runtime = make_runtime(emulator, "deployment.name=scraped", hooks=hooks)
    runtime.chat("one", max_tokens=10, extra_headers=USAGE)
    runtime.chat("two", stream=True, max_tokens=10, extra_headers=USAGE)
    runtime.chat("three", stream=True, max_tokens=10, extra_headers=USAGE)
    failing = {"x-emulator-fault": "server_error;retry_after_ms=1;times=9;id=metrics-500"}
    with pytest.raises(ServerError):  # the built-in retry tries 4 times, all fail
        runtime.chat("four", max_tokens=10, extra_headers={**USAGE, **failing})

    with serve_metrics(0, store=store) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        samples = scrape(server.url)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset({"deployment": "scraped", **labels}.items()))]

    model = {"model": "gpt-4o-mini"}
    assert value("rakka_requests_total", **model, outcome="ok") == 3
    assert value("rakka_requests_total", **model, outcome="server_error") == 1
    assert value("rakka_attempts_total", **model, outcome="ok") == 3
    assert value("rakka_attempts_total", **model, outcome="server_error") == 4
    assert value("rakka_tokens_total", **model, kind="input") == 3000
    assert value("rakka_tokens_total", **model, kind="cached") == 600
    assert value("rakka_tokens_total", **model, kind="output") == 30
    # Each ok request: 800 * 0.15 + 200 * 0.075 + 10 * 0.60 = 141 micro-dollars.
    assert value("rakka_cost_usd_total", **model) == pytest.approx(3 * 141 / 1e6)
    assert value("rakka_request_duration_seconds_count", **model) == 4
    assert value("rakka_time_to_first_token_seconds_count", **model) == 2  # streamed only
    assert value("rakka_requests_in_flight") == 0
    # The emulator's bucket starts at 10 000 requests and refills; 7 were taken.
    assert 9990 <= value("rakka_ratelimit_remaining_requests") <= 10_000
    assert value("rakka_ratelimit_remaining_tokens") > 0

    snapshot = metrics_snapshot(store)
    key = label_key(deployment="scraped", model="gpt-4o-mini", outcome="ok")
    assert snapshot["rakka_requests_total"][key] == 3
    histogram = snapshot["rakka_request_duration_seconds"][
        label_key(deployment="scraped", model="gpt-4o-mini")
    ]
    assert histogram["count"] == 4 and histogram["buckets"]["+Inf"] == 4


def test_unknown_cost_budget_refusal_and_cancelled_streams_are_counted(
    emulator: Emulator, make_runtime: RuntimeFactory, hooks: PluginHooks, store: MetricsStore
) -> None:
    runtime = make_runtime(
        emulator,
        "deployment.name=outcomes",
        "deployment.model=acme-finetune",
        "+deployment.pricing={input: 1000000, output: 1000000}",  # acme-finetune: $1 a token
        "deployment.budget.max_spend_per_hour_usd=15",
        hooks=hooks,
    )
    runtime.chat("hi", max_tokens=4)  # estimated $12, billed $9
    with pytest.raises(Exception, match="budget_exceeded"):
        runtime.chat("hi", max_tokens=4)
    handle = runtime.stream("a longer answer", model="other-model", max_tokens=50)
    next(iter(handle))
    handle.close()  # the caller walks away mid-stream
    requests = metrics_snapshot(store)["rakka_requests_total"]
    assert requests == {
        label_key(deployment="outcomes", model="acme-finetune", outcome="ok"): 1,
        label_key(deployment="outcomes", model="acme-finetune", outcome="budget_exceeded"): 1,
        label_key(deployment="outcomes", model="other-model", outcome="cancelled"): 1,
    }
    costs = metrics_snapshot(store)["rakka_cost_usd_total"]
    assert costs == {label_key(deployment="outcomes", model="acme-finetune"): 9.0}


def test_unknown_and_estimated_costs_have_their_own_counters(
    emulator: Emulator, make_runtime: RuntimeFactory, hooks: PluginHooks, store: MetricsStore
) -> None:
    runtime = make_runtime(
        emulator, "deployment.name=flags", "deployment.retry.enabled=false", hooks=hooks
    )
    runtime.chat("hi", model="acme-finetune", max_tokens=3)  # no price: unknown, never $0
    with pytest.raises(Exception, match="stream_interrupted"):
        runtime.chat("hi", stream=True, extra_headers={"x-emulator-fault": "cut;after=3"})
    snapshot = metrics_snapshot(store)
    unknown = label_key(deployment="flags", model="acme-finetune")
    estimated = label_key(deployment="flags", model="gpt-4o-mini")
    assert snapshot["rakka_cost_unknown_requests_total"] == {unknown: 1}
    assert unknown not in snapshot["rakka_cost_usd_total"]
    assert snapshot["rakka_cost_estimated_requests_total"] == {estimated: 1}
    assert snapshot["rakka_cost_usd_total"][estimated] > 0


def test_breaker_state_and_session_swaps_come_from_the_events(
    hooks: PluginHooks, store: MetricsStore
) -> None:
    hooks.breaker_state_changed("edge", "closed", "open", 12.5)
    assert metrics_snapshot(store)["rakka_circuit_breaker_state"] == {'deployment="edge"': 2.0}
    hooks.breaker_state_changed("edge", "open", "half_open", None)
    assert metrics_snapshot(store)["rakka_circuit_breaker_state"] == {'deployment="edge"': 1.0}
    hooks.breaker_state_changed("edge", "half_open", "closed", None)
    assert metrics_snapshot(store)["rakka_circuit_breaker_state"] == {'deployment="edge"': 0.0}
    snapshot = SessionSnapshot(None, {})
    hooks.session_swapped("edge", snapshot, snapshot)
    hooks.session_swapped("edge", snapshot, snapshot)
    assert metrics_snapshot(store)["rakka_session_swaps_total"] == {'deployment="edge"': 2.0}


def test_label_values_stay_bounded(
    emulator: Emulator, make_runtime: RuntimeFactory, hooks: PluginHooks, store: MetricsStore
) -> None:
    runtime = make_runtime(emulator, "deployment.name=bounded", hooks=hooks)
    prompts = [f"prompt number {i} with secret-{i}" for i in range(60)]
    ids = []
    for i, prompt in enumerate(prompts):
        request = runtime.request(prompt, stream=False, model=f"free-text-model-{i}", max_tokens=1)
        ids.append(request.request_id)
        runtime.execute(request).result()
    snapshot = metrics_snapshot(store)
    series = snapshot["rakka_requests_total"]
    assert sum(series.values()) == 60
    # The configured model plus MAX_MODELS_PER_DEPLOYMENT others, then everything is "other".
    assert len(series) == MAX_MODELS_PER_DEPLOYMENT + 1
    assert series[label_key(deployment="bounded", model="other", outcome="ok")] == 60 - 16
    every_key = " ".join(key for values in snapshot.values() for key in values)
    assert not any(
        prompt in every_key or f"secret-{i}" in every_key for i, prompt in enumerate(prompts)
    )
    assert not any(request_id in every_key for request_id in ids)


def test_works_without_prometheus_client() -> None:
    # A None entry in sys.modules makes `import prometheus_client` fail, as if not installed.
    code = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None
        from rakka_runtime.metrics import MetricsUnavailable, metrics_snapshot, serve_metrics
        from rakka_runtime.runtime import Runtime
        with Runtime.from_overrides(["deployment.name=offline"]) as runtime:
            runtime.chat("hello", max_tokens=2)
        print(metrics_snapshot()["rakka_requests_total"])
        try:
            serve_metrics(0)
        except MetricsUnavailable as exc:
            print("unavailable:", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert '{\'deployment="offline",model="gpt-4o-mini",outcome="ok"\': 1.0}' in out.stdout
    assert "unavailable: serving metrics needs prometheus_client" in out.stdout


def test_prometheus_client_is_imported_only_to_serve() -> None:
    code = (
        "import sys, rakka_runtime.metrics, rakka_runtime.plugins; "
        "rakka_runtime.plugins.PluginHooks(); print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_chat_serves_metrics_while_it_runs() -> None:
    out = CliRunner().invoke(cli, ["chat", "hello", "--metrics-port", "0"])
    assert out.exit_code == 0, out.stderr
    first = out.stderr.splitlines()[0]
    assert first.startswith("metrics: http://127.0.0.1:") and first.endswith("/metrics")
