"""How long after a Kubernetes secret update does the first request carry the new key?

A projected secret volume (``api-key -> ..data/api-key``, ``..data -> ..<timestamp>``) is
updated the way the kubelet does it, N times; client threads keep requests flowing through
one runtime against the bundled emulator, which reads the same file (accepting the previous
key for a grace period, so nothing fails while the runtime catches up). For each update we
take three times:

- ``t0``: the ``os.replace`` of ``..data`` (the update becomes visible);
- ``swap``: the session's snapshot swap (the ``rakka_session_swapped`` hook);
- ``first``: the first request that sets off with the new key. An innermost middleware
  reads the session snapshot just before the wire client does (the same property, a few
  microseconds apart), so that read stands for the request's.

It prints p50/p95/p99/max of ``swap - t0`` and ``first - t0`` in milliseconds, then a JSON
line. Run from the repository root::

    .venv/bin/python benchmarks/rotation_latency.py --swaps 50 --debounce 100ms
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rakka_provider_openai.emulator import Emulator
from rakka_runtime import hookimpl
from rakka_runtime.config.loader import load_config
from rakka_runtime.errors import InferenceError
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.runtime import Runtime
from rakka_runtime.session import Session, SessionSnapshot

_stamps = itertools.count(1)


def write_projected(root: Path, value: str, key: str = "api-key") -> float:
    """Update the volume as the kubelet's AtomicWriter does; returns when it became visible."""
    stamp = f"..2026_11_27_10_00_00.{next(_stamps):06d}"
    (root / stamp).mkdir()
    (root / stamp / key).write_text(value, encoding="utf-8")
    data = root / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    os.symlink(stamp, root / "..data_tmp")
    os.replace(root / "..data_tmp", data)
    visible = time.perf_counter()
    if not (root / key).is_symlink():
        os.symlink(f"..data/{key}", root / key)
    if old is not None:
        shutil.rmtree(root / old)
    return visible


class Probe:
    """Plugin: timestamps snapshot swaps and the first request to use each credential."""

    name = "rotation-probe"
    scope = "attempt"
    order = 1_000_000  # innermost: right before the exchange

    def __init__(self) -> None:
        self.session: Session | None = None
        self.swapped: dict[str, float] = {}
        self.first_use: dict[str, float] = {}

    @hookimpl
    def rakka_request_policy(self, deployment: Any, hooks: Any) -> Probe:
        return self

    @hookimpl
    def rakka_session_swapped(
        self, deployment: str, old: SessionSnapshot, new: SessionSnapshot
    ) -> None:
        if new.credential is not None:
            self.swapped.setdefault(new.credential.reveal(), time.perf_counter())

    def enter(self, state: Any) -> None:
        assert self.session is not None
        credential = self.session.snapshot.credential
        if credential is not None:
            self.first_use.setdefault(credential.reveal(), time.perf_counter())

    def leave(self, state: Any, ticket: None, outcome: Any) -> None:
        return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50": round(statistics.median(ms), 1),
        "p95": round(percentile(ms, 95), 1),
        "p99": round(percentile(ms, 99), 1),
        "max": round(max(ms), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.3, help="mean seconds between swaps")
    parser.add_argument("--debounce", default="100ms", help="deployment.secret_watch.debounce")
    parser.add_argument("--threads", type=int, default=4, help="client threads sending requests")
    args = parser.parse_args(argv)

    def key(n: int) -> str:
        return f"sk-bench-{n:04d}-{'k' * 24}"

    root = Path(tempfile.mkdtemp(prefix="rakka-rotation-"))
    probe = Probe()
    failures = 0
    requests = 0
    lock = threading.Lock()
    stop = threading.Event()
    t0: dict[str, float] = {}
    try:
        write_projected(root, key(0))
        hooks = PluginHooks(make_plugin_manager(extra_plugins=[("rotation-probe", probe)]))
        with Emulator(key_file=root / "api-key", key_grace=1.0) as emu:
            config = load_config(
                [
                    "deployment=openai",
                    f"deployment.variant.endpoint={emu.base_url}",
                    "~deployment.api_key",
                    f"+deployment.api_key={{from: file, path: '{root / 'api-key'}'}}",
                    f"deployment.secret_watch.debounce={args.debounce}",
                ]
            )
            with Runtime(config, hooks=hooks) as runtime:
                probe.session = runtime.session

                def client() -> None:
                    nonlocal failures, requests
                    while not stop.is_set():
                        try:
                            runtime.chat("rotate", max_tokens=4)
                            ok = 1
                        except InferenceError:
                            ok = 0
                        with lock:
                            requests += 1
                            failures += 1 - ok

                threads = [threading.Thread(target=client) for _ in range(args.threads)]
                for thread in threads:
                    thread.start()
                rng = random.Random(1)
                try:
                    time.sleep(0.5)  # warm connections
                    for n in range(1, args.swaps + 1):
                        time.sleep(rng.uniform(0.5, 1.5) * args.interval)
                        t0[key(n)] = write_projected(root, key(n))
                    time.sleep(max(1.0, 3 * args.interval))
                finally:
                    stop.set()
                    for thread in threads:
                        thread.join()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    keys = [k for k in t0 if k in probe.first_use and k in probe.swapped]
    to_swap = [probe.swapped[k] - t0[k] for k in keys]
    to_first = [probe.first_use[k] - t0[k] for k in keys]
    missed = len(t0) - len(keys)
    report = {
        "swaps": args.swaps,
        "measured": len(keys),
        "missed": missed,
        "debounce": args.debounce,
        "client_threads": args.threads,
        "requests": requests,
        "failed_requests": failures,
        "file_to_snapshot_swap_ms": summary(to_swap) if keys else None,
        "file_to_first_request_ms": summary(to_first) if keys else None,
        "python": sys.version.split()[0],
    }
    if keys:
        print(f"{len(keys)} rotations, {requests} requests, {failures} failed")
        for label, values in (
            ("file -> snapshot swap", to_swap),
            ("file -> first request", to_first),
        ):
            s = summary(values)
            print(
                f"  {label:24} p50 {s['p50']:7.1f} ms   p95 {s['p95']:7.1f} ms   "
                f"p99 {s['p99']:7.1f} ms   max {s['max']:7.1f} ms"
            )
    print(json.dumps(report))
    return 0 if keys and not missed and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
