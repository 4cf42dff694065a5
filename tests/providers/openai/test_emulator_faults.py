"""Each fault's exact wire shape, read off a raw socket, and scenario determinism."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from rakka_provider_openai.emulator import Emulator

BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hello there"}],
    "max_completion_tokens": 6,
}
STREAM_BODY: dict[str, Any] = {**BODY, "stream": True}


@dataclass
class Received:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""
    error: OSError | None = None
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since the request was sent, bytes received so far)"""

    def json(self) -> Any:
        return json.loads(self.body)

    def chunks(self) -> tuple[list[bytes], bool]:
        """Decode a chunked body: its chunks, and whether the last-chunk marker arrived."""
        chunks: list[bytes] = []
        rest = self.body
        while rest:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line, 16)
            if size == 0:
                return chunks, True
            chunks.append(rest[:size])
            rest = rest[size + 2 :]
        return chunks, False

    def events(self) -> list[str]:
        chunks, _ = self.chunks()
        text = b"".join(chunks).decode()
        return [e.removeprefix("data: ") for e in text.split("\n\n") if e]


def exchange(
    emu: Emulator,
    fault: str | None = None,
    body: Any = BODY,
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> Received:
    """One request with ``Connection: close``; read until the server ends the connection."""
    payload = json.dumps(body).encode()
    extra = {**({"x-emulator-fault": fault} if fault else {}), **(headers or {})}
    head = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n{head}\r\n"
    ).encode() + payload
    got = Received()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        start = time.monotonic()
        sock.sendall(request)
        while True:
            try:
                data = sock.recv(65536)
            except OSError as exc:
                got.error = exc
                break
            if not data:
                break
            got.raw += data
            got.arrivals.append((time.monotonic() - start, len(got.raw)))
    head_bytes, _, got.body = got.raw.partition(b"\r\n\r\n")
    if head_bytes:
        status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
        got.status = int(status_line.split()[1])
        got.headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    return got


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def test_reset_closes_before_any_byte(emu: Emulator) -> None:
    got = exchange(emu, "reset")

    assert isinstance(got.error, ConnectionResetError)
    assert got.raw == b""


def test_rate_limit_body_and_retry_headers(emu: Emulator) -> None:
    got = exchange(emu, "rate_limit;retry_after=1.5;retry_after_ms=10;should_retry=false")

    assert got.status == 429
    error = got.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "requests",
        "rate_limit_exceeded",
        None,
    )
    assert "Rate limit reached for gpt-4o-mini" in error["message"]
    assert got.headers["retry-after"] == "1.5"
    assert got.headers["retry-after-ms"] == "10"
    assert got.headers["x-should-retry"] == "false"


def test_retry_after_as_http_date(emu: Emulator) -> None:
    got = exchange(emu, "rate_limit;retry_after=30;retry_after_date=1;should_retry=true")

    when = parsedate_to_datetime(got.headers["retry-after"]).timestamp()
    assert 25 < when - time.time() <= 31
    assert got.headers["x-should-retry"] == "true"


def test_insufficient_quota(emu: Emulator) -> None:
    got = exchange(emu, "insufficient_quota")

    assert got.status == 429
    assert got.json()["error"]["type"] == got.json()["error"]["code"] == "insufficient_quota"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_statuses(emu: Emulator, status: int) -> None:
    got = exchange(emu, f"server_error;status={status}")

    assert got.status == status
    assert got.json()["error"]["type"] == "server_error"
    assert "x-request-id" in got.headers


@pytest.mark.parametrize(
    ("status", "type_", "code"),
    [
        (400, "invalid_request_error", None),
        (403, "request_forbidden", "unsupported_country_region_territory"),
        (404, "invalid_request_error", "model_not_found"),
        (408, "invalid_request_error", None),
        (409, "invalid_request_error", "conflict"),
    ],
)
def test_http_error_bodies(emu: Emulator, status: int, type_: str, code: str | None) -> None:
    got = exchange(emu, f"http_error;status={status}")

    assert got.status == status
    assert (got.json()["error"]["type"], got.json()["error"]["code"]) == (type_, code)


def test_context_length_exceeded(emu: Emulator) -> None:
    got = exchange(emu, "context_length")

    assert got.status == 400
    error = got.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["message"].startswith("This model's maximum context length is 128000 tokens.")


def test_content_filter_shape_follows_route_unless_forced(emu: Emulator) -> None:
    azure_path = "/openai/deployments/d/chat/completions?api-version=2024-10-21"
    openai_shape = exchange(emu, "content_filter").json()["error"]
    azure_shape = exchange(emu, "content_filter", path=azure_path).json()["error"]
    forced = exchange(emu, "content_filter;shape=azure").json()["error"]

    assert openai_shape["type"] == openai_shape["code"] == "content_filter"
    assert azure_shape["code"] == "content_filter"
    assert azure_shape["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert azure_shape["innererror"]["content_filter_result"]["hate"] == {
        "filtered": True,
        "severity": "high",
    }
    assert forced == azure_shape


def test_stall_delays_the_response_head(emu: Emulator) -> None:
    got = exchange(emu, "stall;seconds=0.3")

    assert got.status == 200
    assert 0.3 <= got.arrivals[0][0] < 1.5


def test_stall_mid_pauses_after_k_chunks(emu: Emulator) -> None:
    got = exchange(emu, "stall_mid;after=2;seconds=0.3", STREAM_BODY)

    first_time, first_size = got.arrivals[0]
    assert first_time < 0.25
    assert got.arrivals[-1][0] >= 0.3
    assert 0 < first_size < len(got.raw)
    assert got.events()[-1] == "[DONE]"


def test_cut_stream_stops_without_done(emu: Emulator) -> None:
    complete = exchange(emu, None, STREAM_BODY)
    cut = exchange(emu, "cut;after=3", STREAM_BODY)

    assert complete.chunks()[1] is True
    chunks, terminated = cut.chunks()
    assert cut.status == 200
    assert len(chunks) == 3 < len(complete.chunks()[0])
    assert terminated is False
    assert "[DONE]" not in cut.events()


def test_cut_plain_body_is_shorter_than_promised(emu: Emulator) -> None:
    got = exchange(emu, "cut")

    promised = int(got.headers["content-length"])
    assert 0 < len(got.body) < promised
    assert len(got.body) == promised // 2


def test_drip_spaces_chunks_out(emu: Emulator) -> None:
    got = exchange(emu, "drip;delay_ms=40", {**STREAM_BODY, "max_completion_tokens": 3})

    # role chunk, 3 words, finish chunk, [DONE]: five gaps of 40 ms
    assert got.arrivals[-1][0] >= 0.2
    assert len(got.arrivals) >= 4
    assert got.events()[-1] == "[DONE]"


def test_chunk_delay_applies_to_every_stream() -> None:
    with Emulator(chunk_delay=0.03) as slow:
        got = exchange(slow, None, {**STREAM_BODY, "max_completion_tokens": 4})

    assert got.arrivals[-1][0] >= 0.18  # six gaps between seven events


def test_malformed_plain_and_streamed(emu: Emulator) -> None:
    plain = exchange(emu, "malformed")
    streamed = exchange(emu, "malformed", STREAM_BODY)

    assert plain.status == 200
    with pytest.raises(ValueError):
        plain.json()
    bad = []
    for event in streamed.events():
        try:
            json.loads(event)
        except ValueError:
            bad.append(event)
    assert len(bad) == 2 and bad[-1] == "[DONE]"  # one broken event besides the sentinel


def test_stream_error_event_after_one_chunk(emu: Emulator) -> None:
    got = exchange(emu, "stream_error", STREAM_BODY)

    events = got.events()
    assert len(events) == 2
    assert json.loads(events[0])["object"] == "chat.completion.chunk"
    assert json.loads(events[1]) == {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "code": None,
        }
    }
    assert got.chunks()[1] is True  # the HTTP body ends cleanly; only [DONE] is missing


def test_content_filter_finish_in_a_stream(emu: Emulator) -> None:
    got = exchange(emu, "content_filter_finish", STREAM_BODY)

    chunks = [json.loads(e) for e in got.events()[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    words = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert len(words) == 3  # half of max_completion_tokens=6


def test_times_and_id_fail_n_times_then_succeed() -> None:
    with Emulator() as emu:
        fault = "server_error;status=503;times=2;id=retry-a"
        statuses = [exchange(emu, fault).status for _ in range(4)]
        other_id = exchange(emu, "server_error;status=503;times=2;id=retry-b").status
        counted = emu.stats.faults_injected

    assert statuses == [503, 503, 200, 200]
    assert other_id == 503
    assert counted == {"server_error": 3}


def test_scenario_every_and_requests() -> None:
    scenario = {
        "rules": [
            {"fault": "reset", "requests": [2]},
            {"fault": "server_error;status=503", "every": 3},
        ]
    }
    with Emulator(scenario=scenario) as emu:
        outcomes = [exchange(emu).status for _ in range(7)]
        header_wins = exchange(emu, "rate_limit").status  # request 8
        ninth = exchange(emu).status
        counted = emu.stats.faults_injected

    assert outcomes == [200, 0, 503, 200, 200, 503, 200]
    assert header_wins == 429
    assert ninth == 503
    assert counted == {"reset": 1, "server_error": 3, "rate_limit": 1}


def _pattern(seed: int) -> list[int]:
    scenario = {
        "rules": [{"fault": "rate_limit;retry_after_ms=10", "probability": 0.3}],
        "seed": seed,
    }
    with Emulator(scenario=scenario) as emu:
        return [exchange(emu).status for _ in range(30)]


def test_scenario_probability_is_deterministic_per_seed() -> None:
    first, again, other = _pattern(1), _pattern(1), _pattern(2)

    assert first == again
    assert first != other
    assert 0 < first.count(429) < 30


def test_set_scenario_from_files_at_runtime(tmp_path: Path) -> None:
    yaml_file = tmp_path / "scenario.yaml"
    yaml_file.write_text("seed: 3\nrules:\n  - fault: insufficient_quota\n    requests: [1]\n")
    json_file = tmp_path / "scenario.json"
    json_file.write_text(json.dumps([{"fault": "http_error;status=409", "every": 1}]))
    with Emulator() as emu:
        before = exchange(emu).status
        emu.set_scenario(yaml_file)
        from_yaml = [exchange(emu).status for _ in range(2)]
        emu.set_scenario(str(json_file))
        from_json = exchange(emu).status
        emu.set_scenario(None)
        cleared = exchange(emu).status

    assert (before, from_yaml, from_json, cleared) == (200, [429, 200], 409, 200)


@pytest.mark.parametrize(
    "scenario",
    [
        {"rules": [{"fault": "nope"}]},
        {"rules": [{"fault": "reset", "every": 0}]},
        {"rules": [{"fault": "reset", "probability": 2}]},
        {"rules": [{"fault": "reset", "when": 1}]},
        {"rulez": []},
    ],
)
def test_bad_scenarios_are_rejected(scenario: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Emulator(scenario=scenario)
