"""A 401 re-reads the credential once: a rotation the watcher missed costs one extra
exchange, not a failed request; a key that really is wrong fails after one exchange."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.loader import load_config
from rakka_runtime.errors import Unauthorized
from rakka_runtime.runtime import Runtime
from rakka_runtime.secrets import Secret
from rakka_runtime.session import Session

OLD = "sk-reauth-old-00000000000001"
NEW = "sk-reauth-new-00000000000002"


def unwatched_runtime(emu: Emulator, key: Path) -> Runtime:
    return Runtime(
        load_config(
            [
                "deployment=openai",
                f"deployment.variant.endpoint={emu.base_url}",
                "~deployment.api_key",
                f"+deployment.api_key={{from: file, path: '{key}'}}",
                # No watcher: the rotation below produces no event the runtime could see.
                "deployment.secret_watch.enabled=false",
            ]
        )
    )


def rotate(key: Path, value: str) -> None:
    tmp = key.with_name(key.name + ".tmp")
    tmp.write_text(value, encoding="utf-8")
    os.replace(tmp, key)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_missed_rotation_is_recovered_by_one_more_exchange(tmp_path: Path, stream: bool) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    # The emulator reads the same file and, with no grace, refuses the old key at once.
    with Emulator(key_file=key, key_grace=0.0) as emu, unwatched_runtime(emu, key) as runtime:
        assert runtime.chat("before", stream=stream).attempts == 1
        rotate(key, NEW)
        result = runtime.chat("after", stream=stream)
        assert result.text
        assert result.attempts == 2
        assert [(a.kind, a.status) for a in result.attempt_history] == [
            ("unauthorized", 401),
            ("ok", 200),
        ]
        assert runtime.session is not None and runtime.session.swaps == 1
        # The next request goes straight out with the new key.
        assert runtime.chat("later", stream=stream).attempts == 1


def test_unchanged_key_fails_after_one_exchange(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    with Emulator(keys=[NEW]) as emu, unwatched_runtime(emu, key) as runtime:
        before = emu.stats.requests
        with pytest.raises(Unauthorized) as info:
            runtime.chat("hello")
        assert emu.stats.requests - before == 1
        assert [(a.kind, a.status) for a in info.value.attempts] == [("unauthorized", 401)]
        assert runtime.session is not None and runtime.session.swaps == 0


def test_a_key_that_turned_empty_is_not_tried(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD, encoding="utf-8")
    with Emulator(keys=[NEW]) as emu, unwatched_runtime(emu, key) as runtime:
        key.write_text("", encoding="utf-8")
        before = emu.stats.requests
        with pytest.raises(Unauthorized):
            runtime.chat("hello")
        assert emu.stats.requests - before == 1
        assert runtime.session is not None
        credential = runtime.session.snapshot.credential
        assert credential is not None and credential.reveal() == OLD


def test_a_credential_changed_by_someone_else_is_retried_without_re_reading() -> None:
    reads: list[str] = []
    values = iter([OLD, NEW])

    def resolve() -> Secret:
        reads.append("read")
        return Secret(next(values))

    session = Session(
        "d",
        pool=None,  # type: ignore[arg-type]  # never used: nothing is sent
        resolve_credential=resolve,
        build_headers=lambda c: {"Authorization": f"Bearer {c.reveal() if c else ''}"},
    )
    used = session.cell.current
    assert session.refresh() is True  # the watcher, say, swapped meanwhile
    assert len(reads) == 2
    assert session.reauthorize(used) is True
    assert len(reads) == 2  # the 401'd request just takes the newer snapshot
