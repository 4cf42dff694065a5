"""The distribution's entry point, its config files, and ``rakka anthropic-emulator``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from rakka_runtime.config.loader import load_config
from rakka_runtime.errors import ConfigError
from rakka_runtime.runtime import Runtime

RAKKA = str(Path(sys.executable).parent / "rakka")


def test_entry_point_in_the_rakka_group() -> None:
    [point] = [ep for ep in entry_points(group="rakka") if ep.name == "anthropic"]
    assert point.value == "rakka_provider_anthropic.plugin"


def test_deployment_files_compose_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-not-used-0123456789")
    config = load_config(["deployment=anthropic"])
    assert isinstance(config.deployment, dict)
    assert config.deployment["api_key"] == {"from": "env", "name": "ANTHROPIC_API_KEY"}
    # A misspelt provider key is caught by the provider's config class.
    with pytest.raises(ConfigError, match=r"deployment\.default_max_token"):
        Runtime(load_config(["deployment=local-anthropic", "+deployment.default_max_token=5"]))
    with pytest.raises(ConfigError, match="endpoint is required"):
        Runtime(load_config(["deployment=anthropic", "deployment.endpoint=null"]))


def test_anthropic_emulator_command_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [RAKKA, "anthropic-emulator", "--port", "0", "--key", "k-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"listening on (http://\S+)", first)
        assert found, first
        request = urllib.request.Request(
            found.group(1) + "/v1/messages",
            data=json.dumps(
                {"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
            ).encode(),
            headers={
                "x-api-key": "k-1",
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            message = json.loads(response.read())
            assert response.headers["request-id"].startswith("req_")
            assert response.headers["anthropic-ratelimit-requests-remaining"]
        assert message["stop_reason"] == "max_tokens" and message["usage"]["output_tokens"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_help_of_the_command() -> None:
    done = subprocess.run(
        [RAKKA, "anthropic-emulator", "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and "--key-file" in done.stdout
