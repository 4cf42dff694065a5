"""The asyncio clients an async benchmark compares, behind one small interface.

* ``floor``: raw aiohttp doing the minimum: one ``ClientSession`` (connector limit = the
  scenario's concurrency), ``json.dumps`` of the body per request (as the sync floor),
  one POST; streams: ``async for
  line in response.content`` (SSE lines), ``json.loads`` of every ``data:`` line and the
  content picked out of it; non-streamed: ``json.loads(await response.read())``. No
  types, no policies, no error handling: the floor.
* ``floor-orjson``: the floor with orjson reading every body and event and writing every
  body, as rakka does: how much of rakka's distance to the floor is its JSON library
  (a peer column; the targets stay against the floor as the issue defines it).
* ``httpx``: the same minimum over ``httpx.AsyncClient`` (the SDK's HTTP client; this
  environment's openai SDK ships on its ``httpx2`` fork), pool sized to the concurrency:
  the measured side of the driver's "aiohttp or httpx" decision.
* ``rakka``: :class:`rakka_runtime.aio.AsyncRuntime` from a compiled config (``rakka
  config compile`` in another process; ``AsyncRuntime.from_compiled`` here), every plugin
  registered when it runs, default policies: ``rt.stream(...)``, ``async for``, ``await
  handle.result()``; ``await rt.chat(...)``.
* ``openai``: the official SDK's ``AsyncOpenAI`` on its default httpx client
  (``max_retries=0``), streams closed with ``async with``.
* ``openai-aiohttp``: the same on ``DefaultAioHttpClient`` (``openai[aiohttp]``).

Every client reports the content of every content chunk to ``record`` (the server's send
timestamp: the worker turns it into a delay); each is built inside the measuring process.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any, Protocol

from benchmarks.clients import compile_rakka_config
from benchmarks.payloads import MESSAGES, MODEL, request_body, request_fields

Record = Callable[[str], None]


def _body(*, stream: bool) -> bytes:
    """The request body, encoded per request as any client must (``json.dumps``)."""
    return request_body(stream=stream)


class AsyncBenchClient(Protocol):
    name: str

    async def chat(self) -> None:
        """One non-streamed request, body fully parsed."""

    async def stream(self, record: Record) -> int:
        """One streamed request read to the end; returns the JSON chunks the caller saw,
        after passing every non-empty content to ``record``."""
        ...

    def describe(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class AiohttpFloor:
    name = "floor"

    def __init__(self, base_url: str, concurrency: int) -> None:
        import json

        import aiohttp

        self._loads: Callable[[bytes], Any] = json.loads
        self._body: Callable[..., bytes] = _body
        self.url = base_url + "/chat/completions"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(1, concurrency)),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self.headers = {"content-type": "application/json"}

    async def chat(self) -> None:
        body = self._body(stream=False)
        async with self.session.post(self.url, data=body, headers=self.headers) as r:
            self._loads(await r.read())

    async def stream(self, record: Record) -> int:
        loads = self._loads
        seen = 0
        body = self._body(stream=True)
        async with self.session.post(self.url, data=body, headers=self.headers) as r:
            async for line in r.content:
                if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                    choices = loads(line[6:])["choices"]
                    seen += 1
                    if choices:
                        text = choices[0]["delta"].get("content")
                        if text:
                            record(text)
        return seen

    def describe(self) -> dict[str, Any]:
        import aiohttp

        return {"aiohttp": aiohttp.__version__}

    async def close(self) -> None:
        await self.session.close()


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:  # the openai SDK's own fork, in this environment
        import httpx2 as httpx
    return httpx


def httpx_available() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(name) for name in ("httpx", "httpx2"))


class HttpxFloor:
    name = "httpx"

    def __init__(self, base_url: str, concurrency: int) -> None:
        import json

        httpx = _httpx()
        self._httpx = httpx
        self._loads = json.loads
        self.url = base_url + "/chat/completions"
        n = max(1, concurrency)
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            timeout=httpx.Timeout(None),
        )
        self.headers = {"content-type": "application/json"}

    async def chat(self) -> None:
        body = _body(stream=False)
        response = await self.client.post(self.url, content=body, headers=self.headers)
        self._loads(response.content)

    async def stream(self, record: Record) -> int:
        loads = self._loads
        seen = 0
        async with self.client.stream(
            "POST", self.url, content=_body(stream=True), headers=self.headers
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    choices = loads(line[6:])["choices"]
                    seen += 1
                    if choices:
                        text = choices[0]["delta"].get("content")
                        if text:
                            record(text)
        return seen

    def describe(self) -> dict[str, Any]:
        return {self._httpx.__name__: self._httpx.__version__}

    async def close(self) -> None:
        await self.client.aclose()


class RakkaAsync:
    name = "rakka"

    def __init__(self, base_url: str, concurrency: int) -> None:
        from rakka_runtime.aio import AsyncRuntime

        compiled = os.environ.get("RAKKA_BENCH_COMPILED")
        if compiled is None:  # run on its own (profiling): compile here, in a child
            compiled = os.path.join(tempfile.mkdtemp(prefix="rakka-bench-"), "rakka.json")
            compile_rakka_config(base_url, compiled)
        self.runtime = AsyncRuntime.from_compiled(compiled)

    async def chat(self) -> None:
        await self.runtime.chat(MESSAGES)

    async def stream(self, record: Record) -> int:
        seen = 0
        handle = self.runtime.stream(MESSAGES)
        async for chunk in handle:
            seen += 1
            text = chunk.text_delta
            if text:
                record(text)
        await handle.result()
        return seen

    def describe(self) -> dict[str, Any]:
        hooks = self.runtime.hooks
        return {
            "plugins": [f"{p.name} ({p.source})" for p in hooks.describe()],
            "policies": [
                getattr(m, "name", type(m).__name__)
                for m in hooks.policies(self.runtime.deployment)
            ],
        }

    async def close(self) -> None:
        await self.runtime.aclose()


class OpenAIAsync:
    name = "openai"

    def __init__(self, base_url: str, concurrency: int) -> None:
        import openai

        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key="bench", max_retries=0, http_client=self._http()
        )
        self.messages: Any = MESSAGES  # the SDK's TypedDicts; ours are plain dicts

    def _http(self) -> Any:
        return None  # the SDK's default (httpx)

    async def chat(self) -> None:
        await self.client.chat.completions.create(model=MODEL, messages=self.messages)

    async def stream(self, record: Record) -> int:
        seen = 0
        events = await self.client.chat.completions.create(
            model=MODEL,
            messages=self.messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        async with events:
            async for chunk in events:
                seen += 1
                if chunk.choices:
                    text = chunk.choices[0].delta.content
                    if text:
                        record(text)
        return seen

    def describe(self) -> dict[str, Any]:
        import openai

        return {"openai": openai.__version__, "http_client": type(self.client._client).__name__}

    async def close(self) -> None:
        await self.client.close()


class OpenAIAiohttp(OpenAIAsync):
    name = "openai-aiohttp"

    def _http(self) -> Any:
        import openai

        return openai.DefaultAioHttpClient()


def openai_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openai") is not None


def openai_aiohttp_available() -> bool:
    """``openai[aiohttp]``: aiohttp plus the SDK's aiohttp transport (vendored in recent
    releases, the ``httpx_aiohttp`` package in older ones)."""
    import importlib.util

    if not openai_available() or importlib.util.find_spec("aiohttp") is None:
        return False
    return any(
        importlib.util.find_spec(name) is not None
        for name in ("openai._vendor.httpx_aiohttp", "httpx_aiohttp")
    )


class AiohttpFloorOrjson(AiohttpFloor):
    name = "floor-orjson"

    def __init__(self, base_url: str, concurrency: int) -> None:
        import orjson

        super().__init__(base_url, concurrency)
        self._loads = orjson.loads
        self._body = lambda *, stream: orjson.dumps(request_fields(stream=stream))


CLIENTS: dict[str, Callable[[str, int], AsyncBenchClient]] = {
    "floor": AiohttpFloor,
    "floor-orjson": AiohttpFloorOrjson,
    "httpx": HttpxFloor,
    "rakka": RakkaAsync,
    "openai": OpenAIAsync,
    "openai-aiohttp": OpenAIAiohttp,
}
