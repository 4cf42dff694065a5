"""A router across processes: a 429 with ``retry-after: 2`` from one deployment keeps
every process of the fleet off it for those 2 s (the pause lives in Redis, and the
router's health reads it), while the other deployment takes the traffic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from redis_support import RedisServer, redis_overrides
from test_shared_fleet import arrivals

from rakka_provider_openai.emulator import Emulator

WORKER = Path(__file__).with_name("route_worker.py")
PROCESSES, THREADS, RUN, PAUSE = 4, 2, 4.0, 2.0


def test_a_429_pause_holds_across_four_processes(redis_server: RedisServer, prefix: str) -> None:
    rule = {"fault": "rate_limit;retry_after=2", "requests": [1]}
    with Emulator(scenario=[rule]) as a, Emulator() as b:
        seen_a = arrivals(a)
        overrides = ["deployments=[local_a,local_b]", "routing=local_pair"]
        for name, emu in (("local_a", a), ("local_b", b)):
            overrides += [
                f"deployments.{name}.embedded_emulator=false",
                f"deployments.{name}.variant.endpoint={emu.url}/v1",
            ]
        # Set on `deployment`: every named deployment inherits its policy keys.
        overrides += redis_overrides(redis_server.url, prefix)
        spec: dict[str, Any] = {"overrides": overrides, "duration": RUN, "threads": THREADS}
        processes = [
            subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=dict(os.environ),
            )
            for _ in range(PROCESSES)
        ]
        try:
            for process in processes:
                assert process.stdout is not None
                assert process.stdout.readline().strip() == "ready"
            for process in processes:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            reports = []
            for process in processes:
                out, _ = process.communicate(timeout=RUN + 30)
                assert process.returncode == 0
                reports.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
    first = seen_a[0]
    # Requests already routed when the 429 came back may still arrive; after that, none
    # for the pause, from any process.
    settle = 0.25
    during = [t - first for t in seen_a if first + settle <= t < first + PAUSE - 0.05]
    assert during == [], during
    after = [t for t in seen_a if t >= first + PAUSE]
    assert after, "the deployment got traffic again once the pause ended"
    served = sum((r["served"].get("local_b", 0) for r in reports), 0)
    assert served > 0
    assert all(set(r["outcomes"]) == {"ok"} for r in reports), reports
