"""A canary key, planted through every kind of reference, must never show up anywhere a
person or a collector can read: reprs, exceptions, logs (urllib3's too, at DEBUG), the
CLI's output (``rakka chat``, ``--json``, ``rakka config show``) and the metrics."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from secret_support import wait_until

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.compiled import compile_config
from rakka_runtime.config.loader import dump_config_yaml, load_config
from rakka_runtime.config.plain import to_plain
from rakka_runtime.errors import Unauthorized
from rakka_runtime.runtime import Runtime

CANARY = "sk-canary-" + secrets.token_hex(16)
ROTATED = "sk-canary-rotated-" + secrets.token_hex(16)
OTHER = "sk-not-the-canary-000000000000"

# Runs several `rakka` invocations in one interpreter (to pay Python's start-up once), with
# every logger at DEBUG on stderr; each ends with "=== exit CODE".
_DRIVER = """
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from rakka_runtime.cli import main
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit as exc:
        print(f"=== exit {exc.code}", flush=True)
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Emulator, Emulator]]:
    with Emulator(keys=[CANARY]) as accepting, Emulator(keys=[OTHER]) as refusing:
        yield accepting, refusing


def _source_overrides(kind: str, key_file: Path) -> list[str]:
    if kind == "env":
        return ["deployment.api_key.name=RAKKA_CANARY"]
    if kind == "file":
        return ["~deployment.api_key", f"+deployment.api_key={{from: file, path: '{key_file}'}}"]
    return ["~deployment.api_key", f"+deployment.api_key={{from: inline, value: {CANARY}}}"]


@pytest.mark.parametrize("kind", ["env", "file", "inline"])
def test_cli_output_and_debug_logs_never_hold_the_key(
    servers: tuple[Emulator, Emulator], tmp_path: Path, kind: str
) -> None:
    accepting, refusing = servers
    key_file = tmp_path / "api-key"
    key_file.write_text(CANARY + "\n", encoding="utf-8")
    source = _source_overrides(kind, key_file)

    def at(emu: Emulator) -> list[str]:
        return ["deployment=openai", f"deployment.variant.endpoint={emu.base_url}", *source]

    runs = [
        ["chat", "--json", "hello", *at(accepting)],
        ["chat", "--json", "hello", *at(refusing)],  # the 401 path, as JSON
        ["chat", "hello", *at(refusing)],  # the 401 path, as text
        ["chat", "hello", *at(accepting)],
        ["config", "show", *at(accepting)],
    ]
    out = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RAKKA_CANARY": CANARY},
    )
    everything = out.stdout + out.stderr
    exits = [line for line in out.stdout.splitlines() if line.startswith("=== exit")]
    assert exits == ["=== exit 0", "=== exit 1", "=== exit 1", "=== exit 0", "=== exit 0"], (
        everything[-3000:]
    )
    answers = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert answers[0]["error"] is None and answers[0]["text"]
    assert answers[1]["error"]["kind"] == "unauthorized"
    assert "error: unauthorized" in out.stderr
    assert "DEBUG" in out.stderr and "urllib3" in out.stderr  # the logs really were on
    assert "from: " + kind in out.stdout  # config show printed the reference
    assert CANARY not in everything
    assert CANARY[-12:] not in everything  # not even the tail of it


def test_in_process_reprs_errors_logs_and_metrics_never_hold_the_key(
    servers: tuple[Emulator, Emulator], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")  # restored after the test
    accepting, refusing = servers
    key_file = tmp_path / "api-key"
    key_file.write_text(CANARY, encoding="utf-8")
    seen: list[str] = []

    def overrides(emu: Emulator) -> list[str]:
        return [
            "deployment=openai",
            f"deployment.variant.endpoint={emu.base_url}",
            *_source_overrides("file", key_file),
            "deployment.secret_watch.debounce=20ms",
        ]

    config = load_config(overrides(accepting))
    seen += [repr(config), str(config), dump_config_yaml(config)]
    with Runtime(config) as runtime:
        result = runtime.chat("hello", stream=True)
        session = runtime.session
        assert session is not None
        seen += [repr(result), repr(runtime.deployment), repr(session), repr(session.snapshot)]
        seen += [repr(session.snapshot.credential), str(to_plain(runtime.deployment))]
        seen.append(json.dumps(compile_config(config, runtime.deployment)))
        # Rotate, then break the file: the watcher's info and error logs run too.
        key_file.write_text(ROTATED, encoding="utf-8")
        assert wait_until(lambda: session.swaps == 1)
        key_file.write_text("", encoding="utf-8")
        assert wait_until(lambda: "keeping the current credential" in caplog.text)

    key_file.write_text(CANARY, encoding="utf-8")
    with Runtime(load_config(overrides(refusing))) as runtime:
        with pytest.raises(Unauthorized) as info:
            runtime.chat("hello")
        error = info.value
        seen += [str(error), repr(error), json.dumps(error.to_dict()), repr(error.attempts)]
        seen += [repr(error.__cause__), repr(error.__context__)]

    seen.append(caplog.text)
    seen += [repr(record.args) for record in caplog.records]
    seen += _metrics_text()
    text = "\n".join(seen)
    for value in (CANARY, ROTATED, CANARY[-12:], ROTATED[-12:]):
        assert value not in text


def _metrics_text() -> list[str]:
    """The metrics snapshot and Prometheus exposition, when the metrics plugin exists."""
    try:
        from rakka_runtime import metrics
    except ImportError:
        return []
    texts = [json.dumps(metrics.metrics_snapshot(), default=str)]
    try:
        server = metrics.serve_metrics()
    except metrics.MetricsUnavailable:
        return texts
    with server, urllib.request.urlopen(server.url, timeout=5) as response:
        exposition = response.read().decode()
    assert "rakka_session_swaps_total" in exposition  # the swap above was counted
    texts.append(exposition)
    return texts
