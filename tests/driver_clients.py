"""One test-facing client over either driver, so a behaviour is tested once for both.

``SyncClient`` calls :class:`Runtime` on threads; ``AsyncClient`` calls
:class:`AsyncRuntime` (sharing the same runtime) on an event loop in a thread of its own,
so a test body stays synchronous and reads the same for both. The ``client_at`` fixture,
parametrised over ``sync`` and ``async``, builds them aimed at a URL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

import pytest

from rakka_runtime.aio import AsyncRunHandle, AsyncRuntime
from rakka_runtime.config.schema import RakkaConfig
from rakka_runtime.errors import InferenceError
from rakka_runtime.plugins import PluginHooks
from rakka_runtime.runtime import RunHandle, Runtime
from rakka_runtime.types import ChatResult
from rakka_testing import EMULATOR_KEY, config_at

T = TypeVar("T")
Outcome = ChatResult | InferenceError

DRIVERS = ("sync", "async")


class Started(Protocol):
    """A request running in the background."""

    def cancel(self) -> None: ...  # handle.cancel(), from the test's thread

    def outcome(self, timeout: float = 10.0) -> Outcome: ...


class Client(Protocol):
    driver: str
    runtime: Runtime

    def run(self, prompt: str = "hi", **kw: Any) -> tuple[ChatResult, list[str]]:
        """Run one request (streamed unless ``stream=False``); the result and the deltas."""
        ...

    def failure(self, prompt: str = "hi", **kw: Any) -> InferenceError:
        """Run one request that must fail; its error."""
        ...

    def run_many(self, count: int, **kw: Any) -> list[Outcome]:
        """``count`` requests at once (threads or tasks)."""
        ...

    def start(self, prompt: str = "hi", **kw: Any) -> Started: ...


def _outcome(call: Callable[[], ChatResult]) -> Outcome:
    try:
        return call()
    except InferenceError as exc:
        return exc


class SyncClient:
    driver = "sync"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _handle(self, prompt: str, kw: dict[str, Any]) -> RunHandle:
        stream = kw.pop("stream", True)
        return self.runtime.execute(self.runtime.request(prompt, stream=stream, **kw))

    def run(self, prompt: str = "hi", **kw: Any) -> tuple[ChatResult, list[str]]:
        handle = self._handle(prompt, kw)
        deltas = [chunk.text_delta for chunk in handle]
        return handle.result(), deltas

    def failure(self, prompt: str = "hi", **kw: Any) -> InferenceError:
        with pytest.raises(InferenceError) as caught:
            self.run(prompt, **kw)
        return caught.value

    def run_many(self, count: int, **kw: Any) -> list[Outcome]:
        results: list[Outcome | None] = [None] * count

        def one(i: int) -> None:
            results[i] = _outcome(lambda: self.run(**dict(kw))[0])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return [r for r in results if r is not None]

    def start(self, prompt: str = "hi", **kw: Any) -> Started:
        handle = self._handle(prompt, kw)
        done: Future[Outcome] = Future()
        threading.Thread(
            target=lambda: done.set_result(_outcome(handle.result)), daemon=True
        ).start()
        return _StartedSync(handle, done)


class _StartedSync:
    def __init__(self, handle: RunHandle, done: Future[Outcome]) -> None:
        self.handle = handle
        self.done = done

    def cancel(self) -> None:
        self.handle.cancel()

    def outcome(self, timeout: float = 10.0) -> Outcome:
        return self.done.result(timeout)


class AsyncClient:
    driver = "async"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.aio = AsyncRuntime.sharing(runtime)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _handle(self, prompt: str, kw: dict[str, Any]) -> AsyncRunHandle:
        stream = kw.pop("stream", True)
        return self.aio.execute(self.aio.request(prompt, stream=stream, **kw))

    async def _run(self, prompt: str, kw: dict[str, Any]) -> tuple[ChatResult, list[str]]:
        handle = self._handle(prompt, kw)
        deltas = [chunk.text_delta async for chunk in handle]
        return await handle.result(), deltas

    def run(self, prompt: str = "hi", **kw: Any) -> tuple[ChatResult, list[str]]:
        return self.call(self._run(prompt, kw))

    def failure(self, prompt: str = "hi", **kw: Any) -> InferenceError:
        with pytest.raises(InferenceError) as caught:
            self.run(prompt, **kw)
        return caught.value

    def run_many(self, count: int, **kw: Any) -> list[Outcome]:
        async def one() -> Outcome:
            try:
                return (await self._run("hi", dict(kw)))[0]
            except InferenceError as exc:
                return exc

        async def all_of() -> list[Outcome]:
            return list(await asyncio.gather(*(one() for _ in range(count))))

        return self.call(all_of())

    def start(self, prompt: str = "hi", **kw: Any) -> Started:
        handle = self._handle(prompt, kw)

        async def drain() -> Outcome:
            try:
                return await handle.result()
            except InferenceError as exc:
                return exc

        return _StartedAsync(handle, asyncio.run_coroutine_threadsafe(drain(), self.loop))

    def close(self) -> None:
        try:
            self.call(self.aio.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            self.loop.close()


class _StartedAsync:
    def __init__(self, handle: AsyncRunHandle, done: Future[Outcome]) -> None:
        self.handle = handle
        self.done = done

    def cancel(self) -> None:
        self.handle.cancel()

    def outcome(self, timeout: float = 10.0) -> Outcome:
        return self.done.result(timeout)


def _client_of(
    driver: str, runtime: Runtime, opened: list[tuple[Runtime, AsyncClient | None]]
) -> Client:
    if driver == "sync":
        opened.append((runtime, None))
        return SyncClient(runtime)
    aclient = AsyncClient(runtime)
    opened.append((runtime, aclient))
    return aclient


def _close_all(opened: list[tuple[Runtime, AsyncClient | None]]) -> None:
    for runtime, aclient in opened:
        try:
            if aclient is not None:
                aclient.close()
        finally:
            runtime.close()


@pytest.fixture(params=DRIVERS)
def client_for(request: pytest.FixtureRequest) -> Iterator[Callable[[RakkaConfig], Client]]:
    """``client_for(config)``: a client of the parametrised driver over a runtime built
    from any composed config (any provider); closed at the end of the test."""
    opened: list[tuple[Runtime, AsyncClient | None]] = []

    def make(config: RakkaConfig) -> Client:
        return _client_of(request.param, Runtime(config), opened)

    yield make
    _close_all(opened)


@pytest.fixture(params=DRIVERS)
def client_at(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Client]]:
    """``client_at(url, *overrides, hooks=None)``: a client of the parametrised driver aimed
    at ``url`` (an OpenAI-compatible base, ``/v1`` added), with ``deployment.a.b=value``
    overrides, over the given plugins (else the default ones)."""
    monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
    opened: list[tuple[Runtime, AsyncClient | None]] = []

    def make(url: str, *overrides: str, hooks: PluginHooks | None = None) -> Client:
        runtime = Runtime(config_at(url, *overrides), hooks=hooks)
        client: Client
        if request.param == "sync":
            client = SyncClient(runtime)
            opened.append((runtime, None))
        else:
            aclient = AsyncClient(runtime)
            opened.append((runtime, aclient))
            client = aclient
        return client

    yield make
    for runtime, aclient in opened:
        try:
            if aclient is not None:
                aclient.close()
        finally:
            runtime.close()
