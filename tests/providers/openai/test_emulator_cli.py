"""``rakka emulator`` / ``python -m rakka_provider_openai.emulator``: start, serve, stop."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rakka_provider_openai.emulator import main
from rakka_provider_openai.emulator.cli import build_parser

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def test_arguments_parse_into_emulator_settings() -> None:
    args = build_parser().parse_args(
        [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--key",
            "a",
            "--key",
            "b",
            "--key-file",
            "f",
            "--scenario",
            "s.yaml",
            "--chunk-delay",
            "0.01",
            "--rpm",
            "5",
        ]
    )

    assert (args.host, args.port, args.keys, args.key_file) == ("127.0.0.1", 0, ["a", "b"], "f")
    assert (args.scenario, args.chunk_delay, args.rpm) == ("s.yaml", 0.01, 5)
    assert build_parser().parse_args([]).port == 8080


def test_bad_scenario_file_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.yaml"

    assert main(["--port", "0", "--scenario", str(missing)]) == 1
    assert "missing.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serves_until_signalled(tmp_path: Path, stop_signal: signal.Signals) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("file-key", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "rakka_provider_openai.emulator",
        "--port",
        "0",
        "--key",
        "cli-key",
        "--key-file",
        str(key_file),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            banner = process.stdout.readline()
            parts = urlsplit(banner.split()[4])
            statuses = []
            for key in ("cli-key", "file-key", "wrong"):
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
                conn.request(
                    "POST", "/v1/chat/completions", BODY, {"authorization": f"Bearer {key}"}
                )
                statuses.append(conn.getresponse().status)
                conn.close()
            process.send_signal(stop_signal)
            code = process.wait(timeout=10)
            errors = process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()

    assert banner.startswith("rakka emulator listening on http://127.0.0.1:")
    assert statuses == [200, 200, 401]
    assert code == 0
    assert "Traceback" not in errors
