"""Soak: streams never fail while a Kubernetes secret volume rotates the key under them.

8 threads stream continuously through one runtime; the key is rotated 50 times, 150-300 ms
apart, the way the kubelet does it (``..data`` symlink swap). The emulator reads the same
projected file and accepts only the current key and, for 1 s, the ones before it, so a
runtime that lags behind a rotation by more than a second fails requests.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from secret_support import ProjectedVolume, wait_until

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.loader import load_config
from rakka_runtime.errors import InferenceError
from rakka_runtime.runtime import Runtime

THREADS = 8
ROTATIONS = 50


def key(n: int) -> str:
    return f"sk-soak-{n:03d}-{'x' * 24}"


@pytest.mark.soak
@pytest.mark.timeout(60)
def test_no_request_fails_across_50_kubernetes_rotations(tmp_path: Path) -> None:
    volume = ProjectedVolume(tmp_path / "secret")
    volume.write(key(0))
    failures: list[InferenceError] = []
    attempts: Counter[int] = Counter()
    stop = threading.Event()
    rng = random.Random(20261127)
    with Emulator(key_file=volume.path, key_grace=1.0, chunk_delay=0.002) as emu:
        runtime = Runtime(
            load_config(
                [
                    "deployment=openai",
                    f"deployment.variant.endpoint={emu.base_url}",
                    "~deployment.api_key",
                    f"+deployment.api_key={{from: file, path: '{volume.path}'}}",
                    "deployment.secret_watch.debounce=100ms",
                ]
            )
        )
        with runtime:
            session = runtime.session
            assert session is not None

            def stream(worker: int) -> None:
                while not stop.is_set():
                    try:
                        handle = runtime.stream(f"soak {worker}", max_tokens=12)
                        chunks = sum(1 for _ in handle)
                        result = handle.result()
                    except InferenceError as exc:
                        failures.append(exc)
                        continue
                    assert chunks > 0 and result.text
                    attempts[result.attempts] += 1

            threads = [threading.Thread(target=stream, args=(i,)) for i in range(THREADS)]
            for thread in threads:
                thread.start()
            started = time.monotonic()
            try:
                for n in range(1, ROTATIONS + 1):
                    time.sleep(rng.uniform(0.15, 0.30))
                    volume.write(key(n))
                final_seen = wait_until(
                    lambda: (
                        (c := session.snapshot.credential) is not None
                        and c.reveal() == key(ROTATIONS)
                    )
                )
                time.sleep(0.2)  # traffic on the last key too
            finally:
                stop.set()
                for thread in threads:
                    thread.join(10)
            elapsed = time.monotonic() - started
            swaps = session.swaps

    total = sum(attempts.values())
    print(f"soak: {total} streams in {elapsed:.1f}s, attempts {dict(attempts)}, swaps {swaps}")
    assert failures == [], [f"{e.kind}: {e}" for e in failures[:5]]
    assert final_seen
    assert total > 20 * ROTATIONS  # traffic really ran throughout
    # At most one extra exchange (the 401 re-read). On an idle machine none is needed; on a
    # loaded CI box a starved watcher thread may leave a few (3 in ~1300 seen).
    assert set(attempts) <= {1, 2}
    assert attempts[2] <= total // 100
    # The watcher carried the rotations: one swap each, unless two landed within one
    # debounce. (With the watcher off, only 401s trigger re-reads: ~11 swaps, 1% retried.)
    assert ROTATIONS * 0.9 <= swaps <= ROTATIONS
