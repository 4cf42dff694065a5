"""Keys that must not leak however they are broken or echoed (issue 13, items 5-7).

A key with a line break inside is a configuration error naming its source; a server that
echoes the bare key in its error gets it redacted; a traceback that captures locals never
holds an ``Authorization`` header's value.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from hostile_server import Answer, ScriptedServer
from secret_support import wait_until

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.errors import InferenceError
from rakka_runtime.redaction import REDACTED
from rakka_testing import RuntimeFactory

BIN = Path(sys.executable).parent
RAKKA = str(BIN / "rakka")
FIRST = "sk-canary-" + secrets.token_hex(12)
SECOND = "line-two-" + secrets.token_hex(12)
BARE = secrets.token_hex(16)  # an Azure-style key: no "sk-" for a pattern to catch


def run_rakka(
    args: list[str], env_key: str | None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAKKA_HOSTILE_KEY"}
    if env_key is not None:
        env["RAKKA_HOSTILE_KEY"] = env_key
    env.update(extra_env)
    return subprocess.run(
        [RAKKA, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert FIRST not in text and SECOND not in text and BARE not in text
        assert FIRST[-8:] not in text and SECOND[:12] not in text and BARE[-8:] not in text


@pytest.mark.parametrize(
    "broken", [f"{FIRST}\n{SECOND}", f"{FIRST}\r\n{SECOND}", f"{FIRST}\r{SECOND}"]
)
def test_a_key_with_a_line_break_in_an_env_var_is_a_config_error_naming_it(
    emulator: Emulator, broken: str
) -> None:
    done = run_rakka(
        [
            "chat",
            "--json",
            "hi",
            "deployment=openai",
            f"deployment.variant.endpoint={emulator.url}/v1",
            "deployment.api_key.name=RAKKA_HOSTILE_KEY",
        ],
        broken,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "deployment.api_key" in done.stderr and "RAKKA_HOSTILE_KEY" in done.stderr
    assert "line break" in done.stderr
    assert_no_key(done.stdout, done.stderr)
    assert emulator.stats.requests == 0


def test_a_two_line_key_file_is_a_config_error_naming_the_file(
    emulator: Emulator, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{FIRST}\n{SECOND}\n", encoding="utf-8")
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"custom_id": "a", "messages": [{"role": "user", "content": "hi"}]}) + "\n"
    )
    output = tmp_path / "out.jsonl"
    overrides = [
        "deployment=openai",
        f"deployment.variant.endpoint={emulator.url}/v1",
        "~deployment.api_key",
        f"+deployment.api_key={{from: file, path: '{key_file}'}}",
    ]
    chat = run_rakka(["chat", "hi", *overrides], None)
    batch = run_rakka(["batch", str(source), "-o", str(output), *overrides], None)
    for done in (chat, batch):
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert str(key_file) in done.stderr and "line break" in done.stderr
        assert_no_key(done.stdout, done.stderr)
    assert not output.exists() or FIRST not in output.read_text()
    assert emulator.stats.requests == 0


def test_a_key_with_a_control_character_or_beyond_latin_1_is_refused() -> None:
    from rakka_runtime.config.schema import InlineSecret
    from rakka_runtime.errors import ConfigError
    from rakka_runtime.secret_value import Secret
    from rakka_runtime.secrets import resolve_secret

    for bad in (f"{FIRST}\x00x", f"{FIRST}\x7f", f"{FIRST}€", f"{FIRST}\u2028x"):
        with pytest.raises(ConfigError) as info:
            resolve_secret(InlineSecret(value=Secret(bad)))
        assert_no_key(str(info.value), repr(info.value))
    # A Redis password is not a header: any text is fine there, a line break is not.
    assert resolve_secret(InlineSecret(value=Secret("pass€word")), header=False)
    with pytest.raises(ConfigError):
        resolve_secret(InlineSecret(value=Secret("pass\nword")), header=False)


# --- a server that echoes the key (item 6) --------------------------------------------------

ECHO_BODY = (
    b'{"error": {"message": "gateway: key {auth} rejected (Authorization: Bearer {auth})",'
    b' "type": "invalid_request_error", "code": "bad_key"}}'
)


def echo_answer(status: int) -> Answer:
    return Answer(status, {"content-type": "application/json"}, ECHO_BODY)


def sse_echo() -> Answer:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}],
    }
    error = {"error": {"message": "upstream said: {auth} is over quota", "type": "server_error"}}
    body = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(error)}\n\n".encode()
    return Answer(200, {"content-type": "text/event-stream"}, body)


def texts_of(error: InferenceError) -> list[str]:
    partial = error.partial
    return [
        str(error),
        repr(error),
        json.dumps(error.to_dict()),
        "".join(traceback.format_exception(error)),
        partial.text if partial is not None else "",
    ]


@pytest.mark.parametrize(
    "answer", [echo_answer(400), echo_answer(401), echo_answer(500), sse_echo()]
)
def test_an_echoed_key_is_redacted_from_the_error(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch, answer: Answer
) -> None:
    monkeypatch.setenv("RAKKA_HOSTILE_KEY", BARE)
    with ScriptedServer([answer]) as server:
        rt = make_runtime(
            server, "deployment.api_key.name=RAKKA_HOSTILE_KEY", "deployment.retry.max_retries=0"
        )
        with pytest.raises(InferenceError) as info:
            rt.chat("hi", stream=answer.headers["content-type"] == "text/event-stream")
        assert any(BARE.encode() in head for head, _ in server.requests)  # it was sent
    texts = texts_of(info.value)
    assert_no_key(*texts)
    assert REDACTED in texts[0]


def test_the_key_a_rotation_replaced_is_redacted_too(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(BARE)
    # A gateway that still has the old key at hand and echoes it.
    stale = Answer(
        400, {"content-type": "application/json"}, ECHO_BODY.replace(b"{auth}", BARE.encode())
    )
    with ScriptedServer([stale]) as server:
        rt = make_runtime(
            server,
            "~deployment.api_key",
            f"+deployment.api_key={{from: file, path: '{key_file}'}}",
            "deployment.retry.max_retries=0",
        )
        key_file.write_text(SECOND)
        session = rt.session
        assert session is not None
        wait_until(lambda: session.swaps == 1 or session.refresh())
        with pytest.raises(InferenceError) as info:
            rt.chat("hi", stream=False)
    assert_no_key(*texts_of(info.value))


def test_an_echoed_key_never_reaches_json_output_or_batch_records(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"custom_id": "a", "messages": [{"role": "user", "content": "hi"}]}) + "\n"
    )
    output = tmp_path / "out.jsonl"
    with ScriptedServer([echo_answer(400)]) as server:
        overrides = [
            "deployment=openai",
            f"deployment.variant.endpoint={server.url}/v1",
            "deployment.api_key.name=RAKKA_HOSTILE_KEY",
        ]
        chat = run_rakka(["chat", "--json", "hi", *overrides], BARE)
        batch = run_rakka(["batch", str(source), "-o", str(output), *overrides], BARE)
    assert chat.returncode == 1, chat.stderr
    assert json.loads(chat.stdout)["error"]["kind"] == "bad_request"
    assert batch.returncode == 0, batch.stderr
    record = json.loads(output.read_text())
    assert record["error"]["code"] == "bad_request" and REDACTED in record["error"]["message"]
    assert_no_key(chat.stdout, chat.stderr, batch.stdout, batch.stderr, output.read_text())


# --- tracebacks that capture locals (item 7) ------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "stream"),
    [
        ("server_error", False),
        ("reset", False),
        ("reset", True),
        ("cut;after=1", True),
        ("stall;seconds=3", False),
    ],
)
def test_a_traceback_capturing_locals_never_holds_the_key(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch, fault: str, stream: bool
) -> None:
    monkeypatch.setenv("RAKKA_HOSTILE_KEY", BARE)
    with Emulator(keys=[BARE]) as emu:
        emu.set_scenario({"rules": [{"fault": fault, "every": 1}]})
        rt = make_runtime(
            emu,
            "deployment.api_key.name=RAKKA_HOSTILE_KEY",
            "deployment.retry.max_retries=0",
            "deployment.timeouts.request_timeout=500ms",
        )
        with pytest.raises(InferenceError) as info:
            if stream:
                for _ in rt.stream("hi"):
                    pass
            else:
                rt.chat("hi", stream=False)
    # What Sentry and other error reporters record: every frame's locals, the whole chain.
    report = traceback.TracebackException.from_exception(info.value, capture_locals=True)
    text = "".join(report.format())
    assert "Authorization" in text or "headers" in text  # the send path's locals are there
    assert_no_key(text)


def test_any_provider_s_credential_headers_repr_masked() -> None:
    from rakka_runtime.secret_value import Secret
    from rakka_runtime.session import hide_secret_headers

    headers = hide_secret_headers(
        {"X-Custom-Auth": f"Token {BARE}", "api-key": "short", "Accept": "text/plain"},
        Secret(BARE),
    )
    assert BARE not in repr(headers) and "short" not in repr(headers)
    assert headers["X-Custom-Auth"] == f"Token {BARE}"  # sent as it is
    assert repr(headers["Accept"]) == "'text/plain'"


def test_redact_error_scrubs_every_text_field() -> None:
    from rakka_runtime.errors import BadRequest
    from rakka_runtime.redaction import redact_error
    from rakka_runtime.types import ChatResult, ToolCall

    partial = ChatResult("r", text=f"said {BARE}")
    partial.tool_calls.append(ToolCall("c", "f", f'{{"k": "{BARE}"}}'))
    error = BadRequest(
        f"key {BARE} and {SECOND}", code=f"bad_{BARE}", request_id=BARE, partial=partial
    )
    redact_error(error, [BARE, SECOND, "short"])
    assert_no_key(
        str(error),
        repr(error),
        error.code or "",
        error.request_id or "",
        partial.text,
        partial.tool_calls[0].arguments,
    )
    assert error.message == f"key {REDACTED} and {REDACTED}"
