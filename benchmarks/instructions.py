"""Instructions per non-streamed request, counted by valgrind: an A/B that the host's
noise does not move.

    python -m benchmarks.instructions                           # every client below
    python -m benchmarks.instructions --compare base=/tmp/base  # plus a patched copy
    python -m benchmarks.instructions --clients sync-floor,sync-rakka --core

CPU seconds on a shared host moved by ±15 % between identical runs (docs/benchmarks.md),
so a change worth 3 % could not be seen. ``valgrind --tool=cachegrind`` counts the
instructions a client executes instead, to about ±1.5 %: each client runs twice against
a bench server in its own process (not counted), with 300 and with 300 + ``--requests``
requests after the same start, and the difference over ``--requests`` is one request
(start-up and warm-up cancel out). The collector's passes are counted too, as they
happen under valgrind's slower clock (fewer requests overlap than at full speed).

Clients, asyncio at concurrency 256 against ``benchmarks.aio_server`` (50 ms answers):
``floor`` (raw aiohttp, as in ``benchmarks.aio_run``), ``floor-orjson`` (the same
with orjson's JSON, as rakka's), ``transport`` (rakka's
``AioTransport`` alone: send, read, ``json.loads``, no core), ``rakka``
(``AsyncRuntime.chat``). Threads at concurrency 1 against ``benchmarks.server``:
``sync-floor`` (raw urllib3, as in ``benchmarks.run``) and ``sync-rakka``
(``Runtime.chat``). ``--core`` adds ``benchmarks.aio_core --once`` (the core over a
canned transport, no HTTP). Needs valgrind; nothing here runs in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.aio_run import FULL, AioServerProcess
from benchmarks.clients import compile_rakka_config
from benchmarks.run import REPO, BenchServerProcess
from benchmarks.run import _env as run_env

CONCURRENCY = int(os.environ.get("RAKKA_BENCH_CONCURRENCY", "256"))
"""Requests in flight for the asyncio clients (``RAKKA_BENCH_CONCURRENCY`` to change it:
the children read it from the environment they inherit)."""
BASE_REQUESTS = 300
CLIENTS = ("floor", "floor-orjson", "transport", "rakka", "sync-floor", "sync-rakka")


class _TransportOnly:
    """rakka's transport without the core: what the HTTP layer alone costs."""

    def __init__(self, base_url: str) -> None:
        from benchmarks.aio_clients import RakkaAsync
        from benchmarks.payloads import request_body

        self._runtime = RakkaAsync(base_url, CONCURRENCY)
        self._transport = self._runtime.runtime._transport
        self._body = request_body
        self._url = base_url + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "User-Agent": "bench"}

    async def chat(self) -> None:
        response = await self._transport.send(
            "POST",
            self._url,
            self._body(stream=False),
            self._headers,
            request_timeout=60.0,
            deadline=None,
        )
        data = b""
        while block := await response.read(None):
            data += block
        json.loads(data)
        await response.finish("complete")

    async def close(self) -> None:
        await self._runtime.close()


def _sync_child(client_name: str, count: int, port: int) -> None:
    from benchmarks.clients import FloorClient, RakkaClient

    base = f"http://127.0.0.1:{port}/v1"
    client = FloorClient(base, 1) if client_name == "sync-floor" else RakkaClient(base, 1)
    try:
        for _ in range(BASE_REQUESTS + count):
            client.chat()
    finally:
        client.close()


async def _child(client_name: str, count: int, port: int) -> None:
    from benchmarks.aio_clients import AiohttpFloor, AiohttpFloorOrjson, RakkaAsync

    base = f"http://127.0.0.1:{port}/v1"
    client: Any
    if client_name == "floor":
        client = AiohttpFloor(base, CONCURRENCY)
    elif client_name == "floor-orjson":
        client = AiohttpFloorOrjson(base, CONCURRENCY)
    elif client_name == "transport":
        client = _TransportOnly(base)
    else:
        client = RakkaAsync(base, CONCURRENCY)
    left = BASE_REQUESTS + count

    async def loop() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await client.chat()

    try:
        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
    finally:
        await client.close()


def _instructions(command: list[str], env: dict[str, str], cwd: str) -> int:
    """What ``command`` executed, by valgrind's count (run from ``cwd``, off the checkout:
    ``-m`` puts the working directory first on sys.path, before a --compare copy)."""
    valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
    valgrind.append("--cachegrind-out-file=/dev/null")
    done = subprocess.run(
        [*valgrind, *command], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    for line in done.stderr.splitlines():
        if "I" in line and "refs:" in line:
            return int(line.rsplit(":", 1)[1].strip().replace(",", ""))
    raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")


def _env(prefix: str | None, compiled: str | None) -> dict[str, str]:
    env = run_env(prefix)  # a copy's core with its own provider, then the checkout
    env["PYTHONPATH"] += os.pathsep + str(REPO / "providers" / "openai")
    if compiled is not None:
        env["RAKKA_BENCH_COMPILED"] = compiled
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--requests", type=int, default=2000, help="requests counted")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--core", action="store_true", help="also the core alone")
    parser.add_argument(
        "--child", nargs=3, metavar=("CLIENT", "COUNT", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        client, count, port = args.child[0], int(args.child[1]), int(args.child[2])
        if client.startswith("sync-"):
            _sync_child(client, count, port)
        else:
            asyncio.run(_child(client, count, port))
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    copies: list[tuple[str, str | None]] = [("rakka", None)]
    for spec in args.compare:
        name, _, path = spec.partition("=")
        if not Path(path).is_dir():
            raise SystemExit(f"--compare wants NAME=DIR with an existing DIR, got {spec!r}")
        copies.append((f"rakka@{name}", str(Path(path).resolve())))
    workdir = tempfile.mkdtemp(prefix="rakka-instr-")
    server = AioServerProcess(FULL)
    sync_server = BenchServerProcess(chunks=20)
    try:
        rows: list[tuple[str, int]] = []
        for client in args.clients.split(","):
            port = sync_server.port if client.startswith("sync-") else server.port
            compiled = os.path.join(workdir, f"rakka-{port}.json")
            if not os.path.exists(compiled):
                compile_rakka_config(f"http://127.0.0.1:{port}/v1", compiled)
            floor = "floor" in client
            for label, prefix in copies if not floor else [("", None)]:
                env = _env(prefix, compiled)
                name = client if not label.startswith("rakka@") else f"{client}@{label[6:]}"

                def make(count: int, client: str = client, port: int = port) -> list[str]:
                    child = ["--child", client, str(count), str(port)]
                    return [sys.executable, "-m", "benchmarks.instructions", *child]

                counted = _instructions(make(args.requests), env, workdir)
                per = (counted - _instructions(make(0), env, workdir)) // args.requests
                rows.append((name, per))
                print(f"{name}: {per:,} instructions per request", flush=True)
        if args.core:  # benchmarks.aio_core compiles its own config (never contacted)
            for label, prefix in copies:
                env = _env(prefix, None)

                def core(count: int) -> list[str]:
                    once = ["--once", "--requests", str(count)]
                    return [sys.executable, "-m", "benchmarks.aio_core", *once]

                counted = _instructions(core(1100), env, workdir)
                per = (counted - _instructions(core(100), env, workdir)) // 1000
                name = "core" if label == "rakka" else f"core@{label[6:]}"
                rows.append((name, per))
                print(f"{name}: {per:,} instructions per request", flush=True)
        floors = {"": dict(rows).get("floor"), "sync-": dict(rows).get("sync-floor")}
        print()
        print("| client | instructions per request | ÷ its floor |")
        print("|---|---|---|")
        for name, per in rows:
            floor_of = floors["sync-" if name.startswith("sync-") else ""]
            core = name.startswith("core")
            ratio = "—" if core or not floor_of else f"{per / floor_of:.2f}x"
            print(f"| {name} | {per:,} | {ratio} |")
    finally:
        server.stop()
        sync_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
