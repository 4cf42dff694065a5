"""A policy that does I/O is never called as it is on the event loop: the asyncio driver
awaits its ``*_async`` twins, or runs a ``blocking`` policy's calls in a worker thread;
a cancel ends the caller's wait at once, and what the policy then grants is left again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from rakka_provider_openai.emulator import Emulator
from rakka_runtime import hookimpl
from rakka_runtime.aio import AsyncRuntime
from rakka_runtime.config.schema import DeploymentConfig
from rakka_runtime.core.policy import Outcome, Policy
from rakka_runtime.core.state import CallState
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_testing import EMULATOR_KEY, config_at


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(keys=[EMULATOR_KEY]) as emu:
        yield emu


class _Recorder:
    """Which calls happened, and on which thread."""

    name = "recorder"
    scope: Literal["request", "attempt"] = "attempt"
    order = 50

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.left: list[Outcome] = []
        self.gate = threading.Event()
        self.gate.set()

    def _saw(self, what: str) -> None:
        self.calls.append((what, threading.get_ident()))


class _Blocking(_Recorder):
    blocking = True

    def enter(self, state: CallState) -> str:
        self._saw("enter")
        assert self.gate.wait(10), "the test never opened the gate"
        return "ticket"

    def on_response(self, state: CallState, ticket: str) -> None:
        self._saw("on_response")

    def leave(self, state: CallState, ticket: str, outcome: Outcome) -> None:
        self._saw("leave")
        self.left.append(outcome)


class _Awaitable(_Recorder):
    def enter(self, state: CallState) -> str:
        raise AssertionError("the asyncio driver called the plain enter")

    def on_response(self, state: CallState, ticket: str) -> None:
        raise AssertionError("the asyncio driver called the plain on_response")

    def leave(self, state: CallState, ticket: str, outcome: Outcome) -> None:
        raise AssertionError("the asyncio driver called the plain leave")

    async def enter_async(self, state: CallState) -> str:
        self._saw("enter")
        await asyncio.sleep(0)
        return "ticket"

    async def on_response_async(self, state: CallState, ticket: str) -> None:
        self._saw("on_response")
        await asyncio.sleep(0)

    async def leave_async(self, state: CallState, ticket: str, outcome: Outcome) -> None:
        self._saw("leave")
        await asyncio.sleep(0)
        self.left.append(outcome)


def _runtime_with(policy: _Recorder, emulator: Emulator, monkeypatch: Any) -> AsyncRuntime:
    class _Plugin:
        @hookimpl
        def rakka_request_policy(self, deployment: DeploymentConfig, hooks: PluginHooks) -> Policy:
            return policy

    monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
    hooks = PluginHooks(make_plugin_manager(extra_plugins=[("recorder", _Plugin())]))
    return AsyncRuntime(config_at(emulator.url), hooks=hooks)


@pytest.mark.parametrize("kind", [_Blocking, _Awaitable], ids=["blocking", "awaitable"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_io_policies_are_never_called_as_they_are_on_the_loop(
    kind: type[_Recorder], stream: bool, emulator: Emulator, monkeypatch: Any
) -> None:
    policy = kind()

    async def main() -> int:
        async with _runtime_with(policy, emulator, monkeypatch) as rt:
            result = await rt.chat("hi", stream=stream, max_tokens=5)
            assert result.text
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert [what for what, _ in policy.calls] == ["enter", "on_response", "leave"]
    threads = {thread for _, thread in policy.calls}
    if kind is _Blocking:
        assert loop_thread not in threads  # worker threads only
    else:
        assert threads == {loop_thread}  # awaited on the loop
    assert [o.ok for o in policy.left] == [True]


def test_a_cancel_during_a_blocking_enter_ends_at_once_and_the_grant_is_left(
    emulator: Emulator, monkeypatch: Any
) -> None:
    policy = _Blocking()
    policy.gate.clear()  # enter blocks (in its worker thread) until the test opens it

    async def main() -> None:
        async with _runtime_with(policy, emulator, monkeypatch) as rt:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await rt.chat("hi", max_tokens=5)
            assert time.monotonic() - started < 2.0  # the gate is still closed
            assert policy.left == []
            policy.gate.set()  # enter grants now, for a caller who has gone
            end = time.monotonic() + 10
            while not policy.left:
                assert time.monotonic() < end, "the grant was never left"
                await asyncio.sleep(0.01)
            assert policy.left[0].abandoned and policy.left[0].error is None
            assert [what for what, _ in policy.calls] == ["enter", "leave"]

    asyncio.run(main())
