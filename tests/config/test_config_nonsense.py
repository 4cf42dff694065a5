"""Config values that used to end in a traceback, or were accepted and misbehaved later,
are refused up front: exit 2, one line naming the dotted path, the value and what is
accepted (issue 13, item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.cli import main

RAKKA = str(Path(sys.executable).parent / "rakka")

CASES = [
    # (overrides, dotted path in the message, a word of what is accepted)
    (["deployment.organization='ørg'"], "deployment.organization", "ASCII"),
    (["deployment.timeouts.request_timeout=1e300"], "deployment.timeouts.request_timeout", "168h"),
    (["deployment.retry.max_backoff=1e300"], "deployment.retry.max_backoff", "168h"),
    (
        [
            "deployment.rate_limits.backend=redis",
            "deployment.rate_limits.redis.url=redis://127.0.0.1:notaport/0",
        ],
        "deployment.rate_limits.redis.url",
        "port",
    ),
    (["deployment.retry.backoff_multiplier=true"], "deployment.retry.backoff_multiplier", "number"),
    (["deployment.retry.max_retries=true"], "deployment.retry.max_retries", "number"),
    (["pricing.as_of='not a date'"], "pricing.as_of", "YYYY-MM-DD"),
    (["+deployment.pricing.input=1e309"], "deployment.pricing.input", "finite"),
    (["pricing.models.gpt-4o-mini.output=1e309"], "pricing.models.gpt-4o-mini.output", "finite"),
    (["deployment.variant.endpoint=notaurl"], "deployment.variant.endpoint", "https://"),
    (
        ["deployment.variant.endpoint=ftp://example.com/v1"],
        "deployment.variant.endpoint",
        "https://",
    ),
    (
        ["deployment.variant.endpoint=http://127.0.0.1:99999/v1"],
        "deployment.variant.endpoint",
        "port",
    ),
    (
        ["deployment.rate_limits.concurrent_requests=10000000"],
        "deployment.rate_limits.concurrent_requests",
        "10000",
    ),
]


@pytest.mark.parametrize(("overrides", "path", "accepted"), CASES)
def test_nonsense_is_exit_2_naming_the_path(
    overrides: list[str], path: str, accepted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "show", "deployment=openai", *overrides])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert path.replace(".variant.", ".variant.direct.") in err or path in err, err
    assert accepted in err, err


def deployment_file(tmp_path: Path, emulator_url: str, **fields: str) -> Path:
    """A --config-dir whose deployment `hostile` sets ``fields`` (YAML double-quoted, so
    escapes like \\n become real control characters, as a config file can hold them)."""
    lines = [
        "name: hostile",
        "provider: openai",
        "model: gpt-4o-mini",
        f"variant: {{kind: direct, endpoint: '{emulator_url}/v1'}}",
        "api_key: {from: env, name: RAKKA_TEST_KEY}",
        *(f'{key}: "{value}"' for key, value in fields.items()),
    ]
    folder = tmp_path / "conf"
    (folder / "deployment").mkdir(parents=True)
    (folder / "deployment" / "hostile.yaml").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("organization", "org\\nX-Injected: 1"),
        ("organization", "org\\r\\nX-Injected: 1"),
        ("project", "proj\\u00e9"),
        ("project", "proj\\x7f"),
        ("organization", "org\\ttab"),
    ],
)
def test_control_or_non_ascii_in_a_header_field_is_exit_2_before_anything_is_sent(
    tmp_path: Path, emulator: Emulator, field: str, value: str
) -> None:
    conf = deployment_file(tmp_path, emulator.url, **{field: value})
    done = subprocess.run(
        [RAKKA, "chat", "hi", "--config-dir", str(conf), "deployment=hostile"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RAKKA_TEST_KEY": "k"},
    )
    assert done.returncode == 2, done.stderr
    assert f"deployment.{field}" in done.stderr and "Traceback" not in done.stderr
    assert "ASCII" in done.stderr
    assert emulator.stats.requests == 0


def test_a_garbage_endpoint_on_the_local_deployment_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for endpoint, why in (("garbage", "https://"), ("http://127.0.0.1:8080/v1", "ignore")):
        with pytest.raises(SystemExit) as info:
            main(["config", "show", "deployment=local", f"deployment.variant.endpoint={endpoint}"])
        err = capsys.readouterr().err
        assert info.value.code == 2, err
        assert "deployment" in err and why in err, err


def test_sane_values_still_pass(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(
            [
                "config",
                "show",
                "deployment=openai",
                "deployment.organization=org-abc123",
                "deployment.variant.endpoint=http://127.0.0.1:8080/v1",
                "deployment.rate_limits.concurrent_requests=10000",
                "deployment.retry.backoff_multiplier=1.5",
                "deployment.timeouts.deadline=24h",
                "pricing.as_of='Aug 2025'",
            ]
        )
    assert info.value.code in (0, None)
    assert "org-abc123" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("deployment.variant.resource='evil.com/x?'", "deployment.variant.resource"),
        ("deployment.variant.endpoint=notaurl", "deployment.variant.endpoint"),
    ],
)
def test_azure_resource_and_endpoint_must_make_a_url(
    override: str, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "show", "deployment=azure", override])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert path in err and "Traceback" not in err, err
