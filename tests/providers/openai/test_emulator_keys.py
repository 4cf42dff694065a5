"""Key checking: static keys, and a key file rotated underneath a running emulator."""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path
from typing import Any

from rakka_provider_openai.emulator import Emulator

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
AZURE_PATH = "/openai/deployments/d/chat/completions?api-version=2024-10-21"
OLD = "sk-old-key-000000000000000001"
NEW = "sk-new-key-000000000000000002"


def status_with(
    emu: Emulator, key: str | None, *, azure: bool = False, bearer: bool = True
) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization" if bearer else "api-key"] = f"Bearer {key}" if bearer else key
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        conn.request("POST", AZURE_PATH if azure else "/v1/chat/completions", BODY, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_any_key_or_none_is_accepted_without_configuration() -> None:
    with Emulator() as emu:
        assert status_with(emu, None)[0] == 200
        assert status_with(emu, "whatever")[0] == 200


def test_static_keys_and_error_shapes() -> None:
    with Emulator(keys=["k-one", OLD]) as emu:
        accepted = [
            status_with(emu, "k-one")[0],
            status_with(emu, OLD, azure=True, bearer=False)[0],
            status_with(emu, OLD, azure=True)[0],
        ]
        missing_status, missing = status_with(emu, None)
        wrong_status, wrong = status_with(emu, NEW)
        azure_status, azure = status_with(emu, "nope", azure=True, bearer=False)

    assert accepted == [200, 200, 200]
    assert missing_status == wrong_status == azure_status == 401
    assert missing["error"]["code"] is None
    assert "didn't provide an API key" in str(missing["error"])
    error = wrong["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_api_key",
        None,
    )
    assert NEW not in error["message"] and NEW[-4:] in error["message"]
    assert azure["error"] == {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make"
        " sure to provide a valid key for an active subscription and use a correct regional"
        " API endpoint for your resource.",
    }


def test_key_file_rotation_with_grace(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(f"  {OLD}\n", encoding="utf-8")
    with Emulator(key_file=key_file, key_grace=0.5) as emu:
        before = status_with(emu, OLD)[0], status_with(emu, NEW)[0]
        key_file.write_text(NEW, encoding="utf-8")
        during = status_with(emu, OLD)[0], status_with(emu, NEW)[0]
        time.sleep(0.6)
        after = status_with(emu, OLD)[0], status_with(emu, NEW)[0]
        key_file.write_text("", encoding="utf-8")
        emptied = status_with(emu, NEW)[0]
        key_file.unlink()
        deleted = status_with(emu, NEW)[0]

    assert before == (200, 401)
    assert during == (200, 200)
    assert after == (401, 200)
    assert emptied == 200  # an empty file keeps the last good key
    assert deleted == 200  # so does a missing one


def test_static_keys_stay_valid_alongside_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(OLD, encoding="utf-8")
    with Emulator(keys=["static-key"], key_file=key_file, key_grace=0.0) as emu:
        key_file.write_text(NEW, encoding="utf-8")
        statuses = [status_with(emu, k)[0] for k in ("static-key", NEW, OLD)]

    assert statuses == [200, 200, 401]


def test_kubernetes_style_symlink_swap_is_seen(tmp_path: Path) -> None:
    # kubelet layout: key -> ..data/key, ..data -> ..<timestamp>; an update swaps ..data.
    first, second = tmp_path / "..2024_01", tmp_path / "..2024_02"
    first.mkdir()
    second.mkdir()
    (first / "key").write_text(OLD, encoding="utf-8")
    (second / "key").write_text(NEW, encoding="utf-8")
    os.symlink(first.name, tmp_path / "..data")
    os.symlink("..data/key", tmp_path / "key")
    with Emulator(key_file=tmp_path / "key", key_grace=0.0) as emu:
        before = status_with(emu, OLD)[0], status_with(emu, NEW)[0]
        os.symlink(second.name, tmp_path / "..data_tmp")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        after = status_with(emu, OLD)[0], status_with(emu, NEW)[0]

    assert before == (200, 401)
    assert after == (401, 200)
