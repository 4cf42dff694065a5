"""``AsyncRuntime``: the asyncio twin of :class:`~rakka_runtime.runtime.Runtime`.

Same config, plugins, policies, results, errors and JSON; requests run in the caller's
task over aiohttp instead of on a thread over urllib3::

    async with AsyncRuntime.from_overrides([]) as rt:
        handle = rt.stream("Write a haiku about queues", max_tokens=64)
        async for chunk in handle:
            print(chunk.text_delta, end="")
        result = await handle.result()

``AsyncRuntime.sharing(runtime)`` calls the same deployment as a thread-side
:class:`Runtime`, with one set of limits, breaker, budgets and metrics for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rakka_runtime.config.schema import RakkaConfig
from rakka_runtime.drivers import aio
from rakka_runtime.drivers.aio_transport import AioTransport
from rakka_runtime.errors import InferenceError
from rakka_runtime.plugins import PluginHooks
from rakka_runtime.pricing import CostEstimate
from rakka_runtime.runtime import Runtime
from rakka_runtime.types import ChatRequest, ChatResult, Message

__all__ = ["AsyncRunHandle", "AsyncRuntime"]

AsyncRunHandle = aio.AsyncRunHandle


class AsyncRuntime:
    """Calls the composed deployment (or, routed, the model groups) from asyncio. Use
    ``async with``, or ``await aclose()``."""

    def __init__(
        self,
        config: RakkaConfig | None = None,
        *,
        hooks: PluginHooks | None = None,
        _runtime: Runtime | None = None,
    ) -> None:
        if _runtime is None:
            if config is None:
                raise TypeError("AsyncRuntime needs a config (or use AsyncRuntime.sharing)")
            _runtime = Runtime(config, hooks=hooks)
            self._owns = True
        else:
            self._owns = False
        self.runtime = _runtime
        self.core = _runtime.core
        self.router = _runtime.router
        self.deployment = _runtime.deployment
        self.hooks = _runtime.hooks
        self.config = _runtime.config
        # One aiohttp session per deployment, made in the first loop that uses it.
        self._transports = {
            name: AioTransport(core.deployment) for name, core in _runtime.cores.items()
        }
        self._transport = self._transports[self.deployment.name]

    @classmethod
    def from_overrides(
        cls,
        overrides: Sequence[str] = (),
        *,
        config_dir: str | None = None,
        hooks: PluginHooks | None = None,
    ) -> AsyncRuntime:
        """Compose conf/ (plus ``config_dir``) with Hydra overrides (at start-up, once)."""
        return cls(
            _runtime=Runtime.from_overrides(overrides, config_dir=config_dir, hooks=hooks)
        )._owning()

    @classmethod
    def from_compiled(cls, path: str | Path, *, hooks: PluginHooks | None = None) -> AsyncRuntime:
        """Build from a compiled config (``rakka config compile``): no Hydra, no pydantic."""
        return cls(_runtime=Runtime.from_compiled(path, hooks=hooks))._owning()

    @classmethod
    def sharing(cls, runtime: Runtime) -> AsyncRuntime:
        """An asyncio view of ``runtime``'s deployment: the same policies (one set of
        limits, breaker, budgets, metrics) and credentials. Closing it closes only its
        own connections; ``runtime`` stays open."""
        return cls(_runtime=runtime)

    def _owning(self) -> AsyncRuntime:
        self._owns = True
        return self

    # --- calling ------------------------------------------------------------------------

    def request(self, prompt: str | Sequence[Message], **kw: Any) -> ChatRequest:
        """Build a checked request, as :meth:`Runtime.request`."""
        return self.runtime.request(prompt, **kw)

    def execute(self, request: ChatRequest, *, deadline: float | None = None) -> AsyncRunHandle:
        """Start ``request``; ``async for`` the handle, or ``await handle.result()``."""
        if not self.runtime.routed:
            state = self.core.new_state(request, deadline)
            return AsyncRunHandle(state, aio.run(self.core, self._transport, state))
        route = self.router.start(request, deadline)
        return AsyncRunHandle(route, aio.run_routed(route, self._transports.__getitem__))

    def stream(self, prompt: str | Sequence[Message], **kw: Any) -> AsyncRunHandle:
        return self.execute(self.request(prompt, stream=True, **kw))

    async def chat(
        self, prompt: str | Sequence[Message], *, stream: bool = False, **kw: Any
    ) -> ChatResult:
        request = self.request(prompt, stream=stream, **kw)
        if self.runtime.routed:
            return await self.execute(request).result()
        # Only the caller's task can cancel this request (nobody holds a handle to it), so
        # it runs without one: no handle, no cancel hook registered around each read, and
        # no coroutine between this one and the request's generator.
        state = self.core.new_state(request)
        async for _ in aio.run(self.core, self._transport, state):
            pass
        if state.result is None:
            raise InferenceError("the request ended without a result")
        return state.result

    def estimate_cost(self, request: ChatRequest) -> CostEstimate:
        return self.runtime.estimate_cost(request)

    async def aclose(self) -> None:
        """Close this view's connections: its aiohttp sessions, and the connections the
        policies opened on this loop (a Redis-shared policy's asyncio client); the runtime
        too when this view owns it."""
        try:
            for transport in self._transports.values():
                await transport.close()
            for core in self.runtime.cores.values():
                for policy in core.policies:
                    aclose = getattr(policy, "aclose", None)
                    if aclose is not None:
                        await aclose()
        finally:
            if self._owns:
                self.runtime.close()

    async def __aenter__(self) -> AsyncRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
