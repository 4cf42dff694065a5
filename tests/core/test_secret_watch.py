"""Live key rotation from a watched file: every way a file gets replaced, debouncing,
bad content, and a watcher that starts and stops with the runtime.

Real files, real inotify events, a real runtime (its session is what is observed); no
request is needed to see a swap, so most tests need no server.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from secret_support import ProjectedVolume, wait_until

from rakka_runtime import hookimpl
from rakka_runtime.config.loader import load_config
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.runtime import Runtime
from rakka_runtime.session import Session, SessionSnapshot

OLD = "sk-watch-old-0000000000000001"
NEW = "sk-watch-new-0000000000000002"


class SwapRecorder:
    def __init__(self) -> None:
        self.swaps: list[tuple[str, SessionSnapshot, SessionSnapshot]] = []

    @hookimpl
    def rakka_session_swapped(
        self, deployment: str, old: SessionSnapshot, new: SessionSnapshot
    ) -> None:
        self.swaps.append((deployment, old, new))


def file_runtime(key: Path, *overrides: str, hooks: PluginHooks | None = None) -> Runtime:
    # Nothing listens on port 9: these tests watch the session, they send nothing.
    return Runtime(
        load_config(
            [
                "deployment=openai",
                "deployment.variant.endpoint=http://127.0.0.1:9/v1",
                "~deployment.api_key",
                f"+deployment.api_key={{from: file, path: '{key}'}}",
                "deployment.secret_watch.debounce=50ms",
                *overrides,
            ]
        ),
        hooks=hooks,
    )


def session_of(runtime: Runtime) -> Session:
    assert runtime.session is not None
    return runtime.session


def current_key(runtime: Runtime) -> str | None:
    credential = session_of(runtime).snapshot.credential
    return None if credential is None else credential.reveal()


def test_in_place_rewrite_swaps_and_fires_the_hook(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD + "\n", encoding="utf-8")
    recorder = SwapRecorder()
    hooks = PluginHooks(make_plugin_manager(extra_plugins=[("recorder", recorder)]))
    with file_runtime(key, hooks=hooks) as runtime:
        before = session_of(runtime).snapshot
        with open(key, "w", encoding="utf-8") as fh:  # same inode, truncated and rewritten
            fh.write(f"  {NEW}\n")
        assert wait_until(lambda: current_key(runtime) == NEW)
        after = session_of(runtime).snapshot
        assert session_of(runtime).swaps == 1
        assert after.headers["Authorization"] == f"Bearer {NEW}"
        assert before.headers["Authorization"] == f"Bearer {OLD}"  # snapshots never change
        assert after.version == before.version + 1
        assert recorder.swaps == [("openai", before, after)]


def test_atomic_rename_is_seen(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    with file_runtime(key) as runtime:
        tmp = tmp_path / ".api-key.tmp"
        tmp.write_text(NEW, encoding="utf-8")
        os.replace(tmp, key)  # a new inode under the old name
        assert wait_until(lambda: current_key(runtime) == NEW)
        assert session_of(runtime).swaps == 1


def test_kubernetes_projected_volume_update_is_seen(tmp_path: Path) -> None:
    volume = ProjectedVolume(tmp_path / "secrets")
    volume.write(OLD)
    with file_runtime(volume.path) as runtime:
        assert current_key(runtime) == OLD
        for i, value in enumerate([NEW, OLD + "-2", NEW + "-3"], start=1):
            volume.write(value)  # ..data swapped; the file api-key itself is never touched
            assert wait_until(lambda v=value: current_key(runtime) == v), value  # type: ignore[misc]
            assert session_of(runtime).swaps == i


def test_a_burst_of_writes_is_debounced_into_one_swap(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    with file_runtime(key, "deployment.secret_watch.debounce=300ms") as runtime:
        session = session_of(runtime)
        watcher = session.watcher
        assert watcher is not None
        for i in range(20):
            key.write_text(f"{NEW}-{i}", encoding="utf-8")
        assert wait_until(lambda: current_key(runtime) == f"{NEW}-19")
        assert session.swaps == 1
        assert watcher.calls == 1


@pytest.mark.parametrize(
    "bad",
    [b"", b"  \n\t", b"\xff\xfe\xfa not utf-8", None],
    ids=["empty", "blank", "not-utf8", "deleted"],
)
def test_bad_content_keeps_the_old_key_and_logs_without_the_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: bytes | None
) -> None:
    caplog.set_level(logging.DEBUG)
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    with file_runtime(key) as runtime:
        session = session_of(runtime)
        watcher = session.watcher
        assert watcher is not None
        calls = watcher.calls
        if bad is None:
            key.unlink()
        else:
            key.write_bytes(bad)
        assert wait_until(lambda: watcher.calls > calls)
        assert wait_until(lambda: "keeping the current credential" in caplog.text)
        assert current_key(runtime) == OLD
        assert session.swaps == 0
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors and str(key) in errors[-1].getMessage()
        # A good key afterwards is still picked up.
        key.write_text(NEW, encoding="utf-8")
        assert wait_until(lambda: current_key(runtime) == NEW)
    assert OLD not in caplog.text and NEW not in caplog.text


def test_watcher_threads_start_with_the_runtime_and_stop_with_it(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    before = set(threading.enumerate())
    runtime = file_runtime(key)
    started = set(threading.enumerate()) - before
    names = sorted(t.name for t in started)
    assert any(n.startswith("rakka-secret-watch:") for n in names), names
    assert any(n.startswith("rakka-secret-observer:") for n in names), names
    runtime.close()
    assert set(threading.enumerate()) - before == set()
    assert session_of(runtime).watcher is None
    runtime.close()  # closing twice is harmless


def test_watching_can_be_disabled(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    before = set(threading.enumerate())
    with file_runtime(key, "deployment.secret_watch.enabled=false") as runtime:
        assert set(threading.enumerate()) - before == set()
        assert session_of(runtime).watcher is None
        key.write_text(NEW, encoding="utf-8")
        assert session_of(runtime).refresh() is True  # an explicit re-read still works
        assert current_key(runtime) == NEW


def test_watchdog_is_imported_only_for_a_file_secret(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    code = (
        "import sys\n"
        "from rakka_runtime.config.loader import load_config\n"
        "from rakka_runtime.runtime import Runtime\n"
        "base = ['deployment=openai', 'deployment.variant.endpoint=http://127.0.0.1:9/v1']\n"
        "Runtime(load_config(base + ['deployment.api_key={from: env, name: K}'])).close()\n"
        "print('watchdog' in sys.modules)\n"
        "file = ['~deployment.api_key', sys.argv[1]]\n"
        "Runtime(load_config(base + file)).close()\n"
        "print('watchdog' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, f"+deployment.api_key={{from: file, path: '{key}'}}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "K": OLD},
    )
    assert out.stdout.split() == ["False", "True"]
