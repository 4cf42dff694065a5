"""The session snapshot: immutable, read once per request, swapped under requests in flight."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
from secret_support import RecordingServer, wait_until

from rakka_runtime.config.loader import load_config
from rakka_runtime.runtime import Runtime
from rakka_runtime.secrets import Secret
from rakka_runtime.session import Session

OLD = "sk-flight-old-0000000000000001"
NEW = "sk-flight-new-0000000000000002"


def test_a_stream_started_before_a_swap_finishes_with_the_old_key(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    with RecordingServer(chunks=12, chunk_delay=0.05) as server:
        runtime = Runtime(
            load_config(
                [
                    "deployment=openai",
                    f"deployment.variant.endpoint={server.url}/v1",
                    "~deployment.api_key",
                    f"+deployment.api_key={{from: file, path: '{key}'}}",
                    "deployment.secret_watch.debounce=20ms",
                ]
            )
        )
        with runtime:
            session = runtime.session
            assert session is not None
            texts: dict[str, str] = {}

            def slow() -> None:
                texts["A"] = runtime.chat("A", stream=True).text

            streaming = threading.Thread(target=slow)
            streaming.start()
            assert server.first_chunk_sent.wait(5)
            key.write_text(NEW, encoding="utf-8")
            assert wait_until(lambda: session.swaps == 1)
            swapped_at = time.monotonic()
            texts["B"] = runtime.chat("B", stream=False).text
            streaming.join(10)

    a, b = server.by_prompt("A"), server.by_prompt("B")
    assert a.authorization == f"Bearer {OLD}"
    assert b.authorization == f"Bearer {NEW}"
    # A really was in flight across the swap and the request after it, and was not cut.
    assert a.started < swapped_at < a.finished
    assert a.finished > b.finished
    assert texts["A"] == "".join(f"w{i} " for i in range(12))
    assert texts["B"]


def test_snapshots_are_immutable_and_never_show_the_key() -> None:
    session = Session(
        "d",
        pool=None,  # type: ignore[arg-type]  # nothing is sent
        resolve_credential=lambda: Secret(OLD),
        build_headers=lambda c: {"api-key": c.reveal() if c else ""},
    )
    snapshot = session.snapshot
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.version = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.headers["api-key"] = "x"  # type: ignore[index]
    for text in (repr(snapshot), str(snapshot), repr(session), repr(session.cell.current)):
        assert OLD not in text


def test_a_swap_listener_that_fails_does_not_undo_the_swap() -> None:
    values = iter([OLD, NEW])

    def listener(*args: object) -> None:
        raise RuntimeError("metrics are down")

    session = Session(
        "d",
        pool=None,  # type: ignore[arg-type]
        resolve_credential=lambda: Secret(next(values)),
        build_headers=lambda c: {"api-key": c.reveal() if c else ""},
        on_swap=listener,
    )
    assert session.refresh() is True
    assert session.snapshot.headers["api-key"] == NEW
    assert session.swaps == 1
