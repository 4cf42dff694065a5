"""Run the async benchmarks and print a markdown table (``--json FILE`` keeps the raw data).

    python -m benchmarks.aio_run              # full: 100/1,000/2,000 paced streams and
                                              # 10,000 requests at concurrency 256
    python -m benchmarks.aio_run --scale      # plus 5,000 streams (floor and rakka)
    python -m benchmarks.aio_run --smoke      # tiny, floor and rakka only, < 30 s (CI)

The bench server (``benchmarks/aio_server.py``, asyncio) runs in a process of its own on
one core, each client in a process of its own pinned to the other core (with two or more
cores), as in ``benchmarks.run --pin``. A fresh server per measurement, on one port (the
compiled rakka config names it). Rounds interleave the clients, alternating who goes
first; each figure is the median over rounds, a ratio the ratio of the medians, and
``spread`` the lowest and highest per-round ratio. The floor is raw aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python benchmarks/aio_run.py`
    sys.path.insert(0, str(REPO))

from benchmarks.aio_clients import (  # noqa: E402
    httpx_available,
    openai_aiohttp_available,
    openai_available,
)
from benchmarks.clients import compile_rakka_config  # noqa: E402
from benchmarks.payloads import json_chunks_per_stream  # noqa: E402
from benchmarks.run import (  # noqa: E402
    PIN,
    Contender,
    Row,
    _cpus,
    _env,
    _pinned,
    _workdir,
    machine,
    render_table,
)


@dataclass(frozen=True)
class Plan:
    rounds: int
    streams: tuple[int, ...]  # concurrent streams per scenario
    chunks: int  # content chunks per stream
    rate: float  # content chunks a second, per stream
    chat_requests: int
    chat_concurrency: int
    chat_warmup: int
    chat_delay: float  # seconds the server takes to answer
    limit: float  # seconds a worker may take at most


FULL = Plan(
    rounds=2,
    streams=(100, 1000, 2000),
    chunks=200,
    rate=20.0,
    chat_requests=10_000,
    chat_concurrency=256,
    chat_warmup=512,
    chat_delay=0.05,
    limit=150.0,
)
SMOKE = Plan(
    rounds=1,
    streams=(20,),
    chunks=10,
    rate=20.0,
    chat_requests=200,
    chat_concurrency=16,
    chat_warmup=16,
    chat_delay=0.05,
    limit=20.0,
)
SCALE = 5000  # --scale: floor and rakka only


class AioServerProcess:
    """The async bench server in a child process; it exits when we close its stdin."""

    def __init__(self, plan: Plan, port: int = 0) -> None:
        command = [sys.executable, "-m", "benchmarks.aio_server", "--port", str(port)]
        command += ["--chunks", str(plan.chunks), "--rate", str(plan.rate)]
        command += ["--delay", str(plan.chat_delay)]
        self.proc = subprocess.Popen(
            command,
            preexec_fn=_pinned(PIN.server),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=_workdir(),
            env=_env(),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.stop()
            raise RuntimeError(f"async bench server did not start (said {line!r})")
        self.port = int(line[1])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_in_process(names: list[str], main: Callable[[int, str], Coroutine[Any, Any, None]]) -> None:
    """For the in-process diagnostics: start the async bench server pinned to the first
    core, pin this process to the second (as the workers are), and run ``main(port, name)``
    for each client name in an event loop of its own; the server stops however that ends."""
    PIN.server, PIN.client = _cpus()
    server = AioServerProcess(FULL)
    try:
        if PIN.client is not None:
            os.sched_setaffinity(0, PIN.client)
        for name in names:
            asyncio.run(main(server.port, name))
    finally:
        server.stop()


def run_worker(
    args: list[str], contender: Contender, compiled: str | None, timeout: float
) -> dict[str, Any]:
    env = _env(contender.pythonpath)
    if compiled is not None:
        env["RAKKA_BENCH_COMPILED"] = compiled
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.aio_worker", "--client", contender.kind, *args],
        preexec_fn=_pinned(PIN.client),
        cwd=_workdir(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {contender.label} {args} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the report ---------------------------------------------------------------------------


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _row(
    metric: str,
    unit: str,
    per_round: dict[str, list[float]],
    target: str = "info",
    check: Any = None,
) -> Row:
    values = {c: _median(v) for c, v in per_round.items() if v}
    floor, rakka = values.get("floor"), values.get("rakka")
    ratio = rakka / floor if rakka is not None and floor else None
    pairs = zip(per_round.get("rakka", []), per_round.get("floor", []), strict=False)
    ratios = [r / f for r, f in pairs if f]
    verdict = "info"
    if check is not None and ratio is not None:
        verdict = "PASS" if check(ratio) else "FAIL"
    return Row(
        metric,
        unit,
        values,
        target=target,
        verdict=verdict,
        ratio=ratio,
        spread=(min(ratios), max(ratios)) if len(ratios) > 1 else None,
    )


def _collect(
    data: dict[str, Any], key: str, labels: list[str], pick: Any
) -> dict[str, list[float]]:
    return {
        c: [pick(rnd[c][key]) for rnd in data["rounds"] if c in rnd and key in rnd[c]]
        for c in labels
    }


def stream_rows(data: dict[str, Any], labels: list[str], plan: Plan, n: int) -> list[Row]:
    key = f"stream:{n}"
    per_stream = json_chunks_per_stream(plan.chunks) / plan.chunks

    def json_chunks(s: dict[str, Any]) -> float:
        # The JSON chunks of the streams this client read (content chunks it received,
        # scaled to the role/finish/usage chunks around them): per chunk it handled.
        return max(1.0, s["delay"]["chunks"] * per_stream)

    get = lambda pick: _collect(data, key, labels, pick)  # noqa: E731
    completed = get(lambda s: float(s["completed"]))
    values = {c: _median(v) for c, v in completed.items() if v}
    rakka_all = all(x == n for x in completed.get("rakka", [])) and bool(completed.get("rakka"))

    # A client that did not finish every stream has no wall time or delay to compare (its
    # failed streams were never waited for) nor a comparable RSS (fewer streams open).
    def whole(limit: float) -> Any:
        return lambda r: rakka_all and r <= limit

    rows = [
        Row(
            f"{n:,} streams: streams completed (of {n:,})",
            "streams",
            values,
            target="all",
            verdict="PASS" if rakka_all else "FAIL",
        ),
        _row(
            f"{n:,} streams: wall time (ideal {plan.chunks / plan.rate:.3g} s)",
            "s",
            get(lambda s: s["wall_s"]),
            "≤ 1.1x floor",
            whole(1.1),
        ),
        _row(
            f"{n:,} streams: p99 delay, server send to caller receipt",
            "s",
            get(lambda s: s["delay"]["p99_s"]),
            "≤ 1.3x floor",
            whole(1.3),
        ),
        _row(f"{n:,} streams: p50 delay", "s", get(lambda s: s["delay"]["p50_s"])),
        _row(
            f"{n:,} streams: client CPU per 1,000 chunks read",
            "ms",
            get(lambda s: s["cpu_s"] / json_chunks(s) * 1e6),
            "≤ 1.3x floor",
            lambda r: r <= 1.3,
        ),
        _row(
            f"{n:,} streams: peak RSS (ru_maxrss)",
            "MiB",
            get(lambda s: s["peak_rss_kib"] / 1024),
            "≤ 1.5x floor",
            whole(1.5),
        ),
        _row(
            f"{n:,} streams: RSS growth from the warm client to the end",
            "MiB",
            get(lambda s: (s["peak_rss_kib"] - s["baseline_rss_kib"]) / 1024),
        ),
        _row(f"{n:,} streams: connections opened", "conns", get(lambda s: s["connections"])),
        _row(
            f"{n:,} streams: client runnable but waiting for a CPU (other load)",
            "s",
            get(lambda s: s.get("sched_wait_s", 0.0)),
        ),
        _row(
            f"{n:,} streams: bench server, worst lateness of a pacing pass",
            "s",
            get(lambda s: s["server_max_lag_s"]),
        ),
    ]
    return rows


def chat_rows(data: dict[str, Any], labels: list[str], plan: Plan) -> list[Row]:
    key = "chat"
    c, n = plan.chat_concurrency, plan.chat_requests
    get = lambda pick: _collect(data, key, labels, pick)  # noqa: E731
    what = f"non-streamed, {n:,} at concurrency {c} ({plan.chat_delay * 1000:.0f} ms server)"
    return [
        _row(
            f"{what}: client CPU per request",
            "µs",
            get(lambda s: s["cpu_s"] / s["requests"] * 1e6),
            "≤ 1.3x floor",
            lambda r: r <= 1.3,
        ),
        _row(
            f"{what}: throughput",
            "req/s",
            get(lambda s: s["completed"] / s["wall_s"]),
            "≥ 0.8x floor",
            lambda r: r >= 0.8,
        ),
        _row(
            f"{what}: connections opened after the warm-up",
            "conns",
            get(lambda s: s["connections"]),
        ),
        _row(
            f"{what}: client runnable but waiting for a CPU (other load)",
            "s",
            get(lambda s: s.get("sched_wait_s", 0.0)),
        ),
        _row(f"{what}: peak RSS", "MiB", get(lambda s: s["peak_rss_kib"] / 1024)),
    ]


def build_rows(data: dict[str, Any], labels: list[str], plan: Plan, sizes: list[int]) -> list[Row]:
    rows: list[Row] = []
    for n in sizes:
        rows += stream_rows(data, labels, plan, n)
    if any("chat" in rnd.get("floor", {}) for rnd in data["rounds"]):
        rows += chat_rows(data, labels, plan)
    return rows


# --- driver -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.aio_run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (< 30 s)")
    parser.add_argument(
        "--scale", action="store_true", help=f"also {SCALE:,} streams (floor and rakka)"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="only floor and rakka (no httpx, no openai)"
    )
    parser.add_argument(
        "--streams", help="comma-separated stream counts, instead of the plan's (e.g. 1000)"
    )
    parser.add_argument("--no-chat", action="store_true", help="skip the non-streamed scenario")
    parser.add_argument("--no-stream", action="store_true", help="skip the stream scenarios")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also run the rakka client from DIR (a patched copy), as column rakka@NAME",
    )
    parser.add_argument("--rounds", type=int, help="override the plan's rounds")
    parser.add_argument("--json", metavar="FILE", help="write the raw results here")
    parser.add_argument(
        "--report", metavar="FILE", help="only print the table of a run saved with --json"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    return parser.parse_args(argv)


def contenders_from(args: argparse.Namespace) -> list[Contender]:
    contenders = [Contender("floor", "floor"), Contender("rakka", "rakka")]
    if not args.smoke and not args.no_peers:
        contenders.append(Contender("floor-orjson", "floor-orjson"))
        if httpx_available():
            contenders.append(Contender("httpx", "httpx"))
        if openai_available():
            contenders.append(Contender("openai", "openai"))
        if openai_aiohttp_available():
            contenders.append(Contender("openai-aiohttp", "openai-aiohttp"))
    for spec in args.compare:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_dir():
            raise SystemExit(f"--compare wants NAME=DIR with an existing DIR, got {spec!r}")
        contenders.append(Contender(f"rakka@{name}", "rakka", str(Path(path).resolve())))
    return contenders


def collect(
    plan: Plan, contenders: list[Contender], sizes: list[int], chat: bool
) -> dict[str, Any]:
    # One port for every fresh server: the compiled rakka config names it.
    probe = AioServerProcess(plan)
    port = probe.port
    probe.stop()
    base_url = f"http://127.0.0.1:{port}/v1"
    compiled: dict[str, str] = {}
    for c in contenders:
        if c.kind == "rakka":
            compiled[c.label] = os.path.join(_workdir(), f"{c.label}.aio.compiled.json")
            compile_rakka_config(base_url, compiled[c.label], _env(c.pythonpath))
    jobs: list[tuple[str, list[str], list[Contender]]] = []
    for n in sizes:
        who = contenders if n != SCALE else [c for c in contenders if c.kind in ("floor", "rakka")]
        jobs.append((f"stream:{n}", ["--job", "stream", "--count", str(n)], who))
    if chat:
        chat_args = ["--job", "chat", "--count", str(plan.chat_requests)]
        chat_args += ["--concurrency", str(plan.chat_concurrency)]
        chat_args += ["--warmup", str(plan.chat_warmup)]
        jobs.append(("chat", chat_args, contenders))
    rounds: list[dict[str, dict[str, Any]]] = []
    described: dict[str, Any] = {}
    for i in range(plan.rounds):
        this_round: dict[str, dict[str, Any]] = {c.label: {} for c in contenders}
        for key, job_args, who in jobs:
            order = who if i % 2 == 0 else who[::-1]
            for c in order:
                server = AioServerProcess(plan, port)
                try:
                    out = run_worker(
                        ["--port", str(port), "--limit", str(plan.limit), *job_args],
                        c,
                        compiled.get(c.label),
                        timeout=plan.limit + 120,
                    )
                finally:
                    server.stop()
                this_round[c.label][key] = out
                described[c.label] = out["info"]
                print(
                    f"round {i + 1} {key} {c.label}: wall {out['wall_s']:.1f} s, "
                    f"cpu {out['cpu_s']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
        rounds.append(this_round)
    return {"rounds": rounds, "described": described, "port": port}


def report(path: str) -> int:
    data = json.loads(Path(path).read_text())
    plan = Plan(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["plan"].items()})
    labels = [c["label"] for c in data["contenders"]]
    sizes = sorted(
        {
            int(k.split(":")[1])
            for r in data["rounds"]
            for c in r.values()
            for k in c
            if k.startswith("stream:")
        }
    )
    print(render_table(build_rows(data, labels, plan, sizes), labels))
    print(f"\n- command: `{data['command']}`")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return report(args.report)
    PIN.server, PIN.client = _cpus()
    plan = SMOKE if args.smoke else FULL
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    sizes = [int(x) for x in args.streams.split(",")] if args.streams else list(plan.streams)
    if args.scale and SCALE not in sizes:
        sizes.append(SCALE)
    if args.no_stream:
        sizes = []
    contenders = contenders_from(args)
    labels = [c.label for c in contenders]
    started = time.perf_counter()
    info = machine()
    data = collect(plan, contenders, sizes, chat=not args.no_chat)
    info["loadavg_end"] = os.getloadavg()
    info["elapsed_s"] = time.perf_counter() - started
    data.update(
        plan=dataclasses.asdict(plan),
        machine=info,
        contenders=[dataclasses.asdict(c) for c in contenders],
        command=" ".join(
            ["python -m benchmarks.aio_run", *(sys.argv[1:] if argv is None else argv)]
        ),
    )
    rows = build_rows(data, labels, plan, sizes)
    data["rows"] = [dataclasses.asdict(row) for row in rows]

    mode = "smoke" if args.smoke else "full"
    print(
        f"## rakka-runtime async benchmarks ({mode}: {plan.rounds} round(s); streams of "
        f"{plan.chunks} content chunks at {plan.rate:g}/s = "
        f"{json_chunks_per_stream(plan.chunks)} JSON chunks; floor = raw aiohttp)\n"
    )
    print(render_table(rows, labels))
    print()
    print(f"- command: `{data['command']}`")
    print(
        f"- machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}; "
        f"load average {info['loadavg_start'][0]:.2f} at start, "
        f"{info['loadavg_end'][0]:.2f} at end; took {info['elapsed_s']:.0f} s; "
        f"pinning: {info['pinning']}"
    )
    print(f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    for label, described in data["described"].items():
        if "plugins" in described:
            print(f"- {label} plugins: {', '.join(described['plugins']) or 'none'}")
            print(f"- {label} policies: {', '.join(described['policies']) or 'none'}")
        else:
            print(f"- {label}: " + ", ".join(f"{k} {v}" for k, v in described.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1, default=str) + "\n")
    failed = [row.metric for row in rows if row.verdict == "FAIL"]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
