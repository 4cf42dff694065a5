"""The emulator's HTTP surface seen through ``http.client``: routes, headers, errors, keep-alive."""

from __future__ import annotations

import ast
import http.client
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3

import rakka_provider_openai.emulator as emulator_package
from rakka_provider_openai.emulator import Emulator
from rakka_provider_openai.emulator.limits import go_duration

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def call(
    emu: Emulator,
    path: str = "/v1/chat/completions",
    body: Any = BODY,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(
            method, path, body=raw, headers={"content-type": "application/json", **(headers or {})}
        )
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def test_every_response_carries_request_id_and_rate_limit_headers(emu: Emulator) -> None:
    responses = [call(emu), call(emu, "/nope"), call(emu, "/v1/models", None, method="GET")]

    for status, headers, _ in responses:
        assert re.fullmatch(r"req_[0-9a-f]{32}", headers["x-request-id"]), status
        assert int(headers["openai-processing-ms"]) >= 0
        assert headers["x-ratelimit-limit-requests"] == "10000"
        assert headers["x-ratelimit-limit-tokens"] == "10000000"
        assert int(headers["x-ratelimit-remaining-requests"]) <= 10000
        assert re.fullmatch(r"(\d+h)?(\d+m)?[\d.]+m?s", headers["x-ratelimit-reset-requests"])
        assert re.fullmatch(r"(\d+h)?(\d+m)?[\d.]+m?s", headers["x-ratelimit-reset-tokens"])
    ids = {h["x-request-id"] for _, h, _ in responses}
    assert len(ids) == 3


def test_remaining_counts_drop_with_each_completion() -> None:
    with Emulator(requests_per_minute=60, tokens_per_minute=6000) as emu:
        first = call(emu)[1]
        second = call(emu)[1]

    assert int(first["x-ratelimit-remaining-requests"]) == 59
    assert int(second["x-ratelimit-remaining-requests"]) == 58
    # prompt (ceil(11/4) + 4 = 7) plus the 16 tokens the answer may use
    assert int(first["x-ratelimit-remaining-tokens"]) == 6000 - 23
    assert first["x-ratelimit-reset-requests"] == "1s"


def test_enforced_limits_answer_429_with_retry_after() -> None:
    with Emulator(requests_per_minute=2, enforce_limits=True) as emu:
        statuses = [call(emu)[0] for _ in range(2)]
        status, headers, body = call(emu)

    assert statuses == [200, 200]
    assert status == 429
    assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    assert json.loads(body)["error"]["type"] == "requests"
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"


def test_completion_response_has_content_length_and_json(emu: Emulator) -> None:
    status, headers, body = call(emu, "/chat/completions")

    assert status == 200
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body)["object"] == "chat.completion"


def test_stream_is_chunked_event_stream(emu: Emulator) -> None:
    status, headers, body = call(emu, body={**BODY, "stream": True})

    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert headers["content-type"].startswith("text/event-stream")
    events = body.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "usage" not in chunks[0]  # only with stream_options.include_usage


def test_models_list_names_the_emulator_model() -> None:
    with Emulator(model="gpt-4.1-nano") as emu:
        status, _, body = call(emu, "/v1/models", None, method="GET")
        one = call(emu, "/v1/models/gpt-4.1-nano", None, method="GET")
        missing = call(emu, "/v1/models/other", None, method="GET")

    assert status == 200
    assert [m["id"] for m in json.loads(body)["data"]] == ["gpt-4.1-nano"]
    assert one[0] == 200 and json.loads(one[2])["id"] == "gpt-4.1-nano"
    assert missing[0] == 404


def test_unknown_path_is_openai_404(emu: Emulator) -> None:
    status, _, body = call(emu, "/v1/embeddings")

    assert status == 404
    assert json.loads(body) == {
        "error": {
            "message": "Invalid URL (POST /v1/embeddings)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_azure_route_without_api_version_is_azure_404(emu: Emulator) -> None:
    status, _, body = call(emu, "/openai/deployments/dep/chat/completions")
    ok = call(emu, "/openai/deployments/dep/chat/completions?api-version=2024-10-21")

    assert status == 404
    assert json.loads(body) == {"error": {"code": "404", "message": "Resource not found"}}
    assert ok[0] == 200
    assert "apim-request-id" in ok[1]
    assert "prompt_filter_results" in json.loads(ok[2])


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, None),
        ({"model": "gpt-4o-mini"}, "messages", "missing_required_parameter"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages", "empty_array"),
        ({**BODY, "max_tokens": 0}, "max_tokens", "integer_below_min_value"),
    ],
)
def test_invalid_bodies_are_400_invalid_request(
    emu: Emulator, body: Any, param: str | None, code: str | None
) -> None:
    status, _, raw = call(emu, body=body)

    error = json.loads(raw)["error"]
    assert status == 400
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)


def test_bad_fault_spec_is_refused_loudly(emu: Emulator) -> None:
    unknown = call(emu, headers={"x-emulator-fault": "explode"})
    bad_param = call(emu, headers={"x-emulator-fault": "server_error;status=200"})

    assert (
        unknown[0] == 400 and "unknown emulator fault" in json.loads(unknown[2])["error"]["message"]
    )
    assert bad_param[0] == 400 and "status" in json.loads(bad_param[2])["error"]["message"]


def test_keep_alive_reuses_one_connection() -> None:
    with Emulator() as emu:
        pool = urllib3.HTTPConnectionPool("127.0.0.1", emu.port, maxsize=1)
        payloads = [BODY, {**BODY, "stream": True}, BODY, {**BODY, "stream": True}, BODY]
        statuses = []
        for payload in payloads:
            response = pool.request("POST", "/v1/chat/completions", json=payload)
            statuses.append(response.status)
        error = pool.request("POST", "/v1/chat/completions", body=b"{")
        after_error = pool.request("POST", "/v1/chat/completions", json=BODY)
        pool.close()

        assert statuses == [200] * 5
        assert (error.status, after_error.status) == (400, 200)
        assert emu.stats.connections_accepted == 1
        assert emu.stats.requests == 7


def test_concurrent_clients_are_all_served() -> None:
    scenario = {"rules": [{"fault": "server_error;status=503", "every": 10}]}
    with Emulator(scenario=scenario) as emu:
        pool = urllib3.HTTPConnectionPool("127.0.0.1", emu.port, maxsize=8, block=True)

        def worker(_: int) -> list[int]:
            return [
                pool.request("POST", "/v1/chat/completions", json=BODY).status for _ in range(25)
            ]

        with ThreadPoolExecutor(8) as executor:
            statuses = [s for batch in executor.map(worker, range(8)) for s in batch]
        pool.close()

        assert len(statuses) == emu.stats.requests == 200
        assert statuses.count(503) == 20 == emu.stats.faults_injected["server_error"]
        assert statuses.count(200) == 180
        assert emu.stats.connections_accepted <= 8


def test_http_1_0_stream_is_close_delimited(emu: Emulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"  # type: ignore[attr-defined]
    conn.request("POST", "/v1/chat/completions", body=json.dumps({**BODY, "stream": True}))
    response = conn.getresponse()
    body = response.read()
    conn.close()

    assert "transfer-encoding" not in response.headers
    assert body.endswith(b"data: [DONE]\n\n")


def test_stop_is_prompt_and_idempotent() -> None:
    emu = Emulator().start()
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(BODY))
    conn.getresponse().read()  # leaves an idle keep-alive connection open

    emu.stop()
    emu.stop()

    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", emu.port, timeout=1).request("GET", "/v1/models")
    conn.close()


def test_go_style_durations() -> None:
    assert [go_duration(s) for s in (0, 0.02, 1, 1.5, 8.64, 60, 360, 3601.5)] == [
        "0s",
        "20ms",
        "1s",
        "1.5s",
        "8.64s",
        "1m0s",
        "6m0s",
        "1h0m1.5s",
    ]


def test_emulator_never_imports_the_runtime() -> None:
    package_dir = Path(emulator_package.__file__).parent
    imported: set[str] = set()
    for source in package_dir.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module)

    assert imported  # the walk found the package's imports at all
    assert not {
        name
        for name in imported
        if name.split(".")[0] in ("rakka_runtime", "rakka_provider_openai")
    }
