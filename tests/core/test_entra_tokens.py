"""Azure Entra ID: bearer tokens from a plugin's token provider, renewed ahead of expiry
without making requests wait, sent as ``Authorization: Bearer`` on Azure routes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from secret_support import RecordingServer, wait_until

from rakka_provider_openai.emulator import Emulator
from rakka_runtime import hookimpl
from rakka_runtime.config.loader import load_config
from rakka_runtime.errors import ConfigError
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.runtime import Runtime
from rakka_runtime.session import Session


def token(n: int) -> str:
    return f"eyJ0eXAi.entra-token-{n:04d}.signature"


class TokenPlugin:
    """Registers ``test-entra``: token n on the n-th call, valid ``lifetime`` seconds; from
    the second call on it takes ``renew_delay`` seconds, or raises when ``fail_renewal``."""

    def __init__(
        self, lifetime: float, *, renew_delay: float = 0.0, fail_renewal: bool = False
    ) -> None:
        self.lifetime = lifetime
        self.renew_delay = renew_delay
        self.fail_renewal = fail_renewal
        self.calls = 0
        self._lock = threading.Lock()

    @hookimpl
    def rakka_token_provider(self, name: str) -> object:
        return self.fetch if name == "test-entra" else None

    def fetch(self) -> tuple[str, float]:
        with self._lock:
            self.calls += 1
            n = self.calls
        if n > 1:
            if self.fail_renewal:
                raise RuntimeError("identity endpoint unreachable")
            time.sleep(self.renew_delay)
        return token(n), time.time() + self.lifetime


@pytest.fixture
def entra_runtime() -> Iterator[object]:
    opened: list[Runtime] = []

    def make(url: str, plugin: TokenPlugin, refresh_before: str = "5m") -> Runtime:
        hooks = PluginHooks(make_plugin_manager(extra_plugins=[("tokens", plugin)]))
        runtime = Runtime(
            load_config(
                [
                    "deployment=azure",
                    f"deployment.variant.endpoint={url}",
                    "deployment.api_key=null",
                    "+deployment.auth={kind: entra, token_provider: test-entra,"
                    f" refresh_before: {refresh_before}}}",
                ]
            ),
            hooks=hooks,
        )
        opened.append(runtime)
        return runtime

    yield make
    for runtime in opened:
        runtime.close()


def session_of(runtime: Runtime) -> Session:
    assert runtime.session is not None
    return runtime.session


def test_azure_sends_the_token_as_bearer_and_the_emulator_accepts_it(entra_runtime) -> None:  # type: ignore[no-untyped-def]
    plugin = TokenPlugin(lifetime=3600)
    with RecordingServer() as server:
        runtime = entra_runtime(server.url, plugin)
        runtime.chat("hello")
        seen = server.by_prompt("hello")
    assert seen.authorization == f"Bearer {token(1)}"
    assert seen.api_key is None
    assert seen.path.startswith("/openai/deployments/gpt-4o-mini/chat/completions?api-version=")
    with Emulator(keys=[token(1)]) as emu:
        assert entra_runtime(emu.url, TokenPlugin(lifetime=3600)).chat("hi").text


def test_a_valid_token_in_its_refresh_window_never_waits_for_renewal(entra_runtime) -> None:  # type: ignore[no-untyped-def]
    # 3 s tokens renewed 1.5 s before expiry; a renewal takes 1 s.
    plugin = TokenPlugin(lifetime=3.0, renew_delay=1.0)
    with RecordingServer() as server:
        runtime = entra_runtime(server.url, plugin, refresh_before="1500ms")
        session = session_of(runtime)
        first = session.cell.current
        assert first.refresh_at is not None and first.expires_at is not None
        time.sleep(max(0.0, first.refresh_at - time.monotonic()) + 0.05)

        def timed(prompt: str) -> float:
            started = time.monotonic()
            runtime.chat(prompt)
            return time.monotonic() - started

        with ThreadPoolExecutor(8) as pool:
            latencies = list(pool.map(timed, [f"in-window-{i}" for i in range(8)]))
        assert max(latencies) < 0.5, latencies  # a renewal takes 1 s: nobody waited for it
        assert plugin.calls == 2  # one renewal, however many requests saw the window
        assert wait_until(lambda: session.swaps == 1, timeout=3)
        runtime.chat("after-renewal")
        assert time.monotonic() < first.expires_at  # all of it happened before expiry
        for i in range(8):
            assert server.by_prompt(f"in-window-{i}").authorization == f"Bearer {token(1)}"
        assert server.by_prompt("after-renewal").authorization == f"Bearer {token(2)}"


def test_an_expired_token_is_renewed_before_the_request_is_sent(entra_runtime) -> None:  # type: ignore[no-untyped-def]
    plugin = TokenPlugin(lifetime=0.6)
    with RecordingServer() as server:
        runtime = entra_runtime(server.url, plugin)
        expires_at = session_of(runtime).cell.current.expires_at
        assert expires_at is not None
        time.sleep(max(0.0, expires_at - time.monotonic()) + 0.05)  # no request saw the window
        runtime.chat("late")
        assert server.by_prompt("late").authorization == f"Bearer {token(2)}"
        assert plugin.calls == 2


def test_a_failing_renewal_keeps_the_token_and_is_not_retried_per_request(  # type: ignore[no-untyped-def]
    entra_runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = TokenPlugin(lifetime=1.6, fail_renewal=True)  # renewed from 0.8 s on
    with RecordingServer() as server:
        runtime = entra_runtime(server.url, plugin)
        refresh_at = session_of(runtime).cell.current.refresh_at
        assert refresh_at is not None
        time.sleep(max(0.0, refresh_at - time.monotonic()) + 0.05)
        for i in range(10):
            runtime.chat(f"r{i}")
        assert wait_until(lambda: "token renewal failed" in caplog.text)
        assert plugin.calls == 2  # retried after a pause, not on each of the 10 requests
        assert server.by_prompt("r9").authorization == f"Bearer {token(1)}"
    assert "identity endpoint unreachable" in caplog.text
    assert token(1) not in caplog.text


def test_a_401_fetches_a_new_token_and_retries_once(entra_runtime) -> None:  # type: ignore[no-untyped-def]
    plugin = TokenPlugin(lifetime=3600)
    with Emulator(keys=[token(2)]) as emu:  # token 1 was revoked
        result = entra_runtime(emu.url, plugin).chat("hello")
    assert result.attempts == 2
    assert plugin.calls == 2


def test_renewal_threads_end_with_the_runtime(entra_runtime) -> None:  # type: ignore[no-untyped-def]
    before = set(threading.enumerate())
    plugin = TokenPlugin(lifetime=1.0, renew_delay=0.3)
    with RecordingServer() as server:
        runtime = entra_runtime(server.url, plugin)  # a 1 s token: renewed after 0.5 s
        refresh_at = session_of(runtime).cell.current.refresh_at
        assert refresh_at is not None
        time.sleep(max(0.0, refresh_at - time.monotonic()) + 0.02)
        runtime.chat("x")  # in the window: starts a renewal that takes 0.3 s
        assert any(t.name.startswith("rakka-token-renew:") for t in threading.enumerate())
        runtime.close()
        assert not any(t.name.startswith("rakka-token-renew:") for t in threading.enumerate())
    assert {t for t in threading.enumerate() if t.name.startswith("rakka")} - before == set()


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="no plugin provides token provider 'nobody'"):
        Runtime(
            load_config(
                [
                    "deployment=azure",
                    "deployment.api_key=null",
                    "+deployment.auth={kind: entra, token_provider: nobody}",
                ]
            )
        )
    with pytest.raises(ConfigError, match="set api_key: null"):
        Runtime(
            load_config(["deployment=azure", "+deployment.auth={kind: entra, token_provider: x}"])
        )
    bad = TokenPlugin(lifetime=-5)
    hooks = PluginHooks(make_plugin_manager(extra_plugins=[("tokens", bad)]))
    with pytest.raises(ConfigError, match="expired"):
        Runtime(
            load_config(
                [
                    "deployment=azure",
                    "deployment.api_key=null",
                    "+deployment.auth={kind: entra, token_provider: test-entra}",
                ]
            ),
            hooks=hooks,
        )
