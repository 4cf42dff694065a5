"""The README's "Writing a provider plugin" example is a working provider: its code is run
as written, registered like a plugin, and called on both drivers against a loopback server
that speaks its little protocol (JSON answers, and ``data: {"delta": ...}`` events)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from raw_http import RawServer, Script

from rakka_runtime.aio import AsyncRuntime
from rakka_runtime.config.schema import EnvConfig, PricingTable, RakkaConfig, RetryPolicy
from rakka_runtime.errors import InferenceError
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.runtime import Runtime

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_provider() -> types.ModuleType:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Writing a provider plugin") :]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    module = types.ModuleType("readme_echo_provider")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(code, "README.md", "exec"), module.__dict__)
    return module


def echo_server(sock: socket.socket, stopping: threading.Event) -> bool:
    # The request line and headers are read by RawServer; the body too (content-length).
    events = b"".join(f'data: {{"delta": "{w} "}}\n\n'.encode() for w in ("one", "two"))
    stream = events + b"data: [END]\n\n"
    sock.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s"
        % (len(stream), stream)
    )
    return True


def json_server(sock: socket.socket, stopping: threading.Event) -> bool:
    body = json.dumps({"text": "hello", "in": 3, "out": 1}).encode()
    sock.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    return True


def failing_server(sock: socket.socket, stopping: threading.Event) -> bool:
    sock.sendall(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
    return True


def runtime_for(url: str) -> Runtime:
    module = readme_provider()
    hooks = PluginHooks(make_plugin_manager(extra_plugins=[("echo", module)]))
    deployment = module.EchoDeployment(
        name="echo",
        provider="echo",
        model="echo-1",
        endpoint=url,
        api_key=None,
        retry=RetryPolicy(enabled=False),
    )
    config = RakkaConfig(
        deployment=deployment,
        pricing=PricingTable(as_of="2026-12-01"),
        env=EnvConfig(name="test"),
    )
    return Runtime(config, hooks=hooks)


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_the_readme_provider_works_on_both_drivers(
    raw_server: Callable[[Script], RawServer], driver: str
) -> None:
    streamed = runtime_for(raw_server(echo_server).url)
    plain = runtime_for(raw_server(json_server).url)
    failing = runtime_for(raw_server(failing_server).url)
    try:
        if driver == "sync":
            stream = streamed.stream("hi")
            assert [c.text_delta for c in stream] == ["one ", "two "]
            assert stream.result().text == "one two "
            result = plain.chat("hi")
            with pytest.raises(InferenceError) as caught:
                failing.chat("hi", max_tokens=1)
        else:

            async def run() -> tuple[list[str], str]:
                async with AsyncRuntime.sharing(streamed) as rt:
                    handle = rt.stream("hi")
                    deltas = [c.text_delta async for c in handle]
                    return deltas, (await handle.result()).text

            deltas, text = asyncio.run(run())
            assert deltas == ["one ", "two "] and text == "one two "

            async def chat(runtime: Runtime) -> object:
                async with AsyncRuntime.sharing(runtime) as rt:
                    return await rt.chat("hi", max_tokens=1)

            result = asyncio.run(chat(plain))  # type: ignore[assignment]
            with pytest.raises(InferenceError) as caught:
                asyncio.run(chat(failing))
        assert result.text == "hello" and result.usage is not None  # type: ignore[attr-defined]
        assert result.usage.input_tokens == 3  # type: ignore[attr-defined]
        assert caught.value.kind == "server_error" and caught.value.status == 503
    finally:
        for runtime in (streamed, plain, failing):
            runtime.close()
