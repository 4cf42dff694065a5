"""Run the benchmark suite and print a markdown table (``--json FILE`` keeps the raw data).

    python -m benchmarks.run            # full: 5 rounds, the numbers in docs/benchmarks.md
    python -m benchmarks.run --smoke    # tiny, 1 round, < 30 s: proves the suite still works
    python -m benchmarks.run --sdk      # add the official openai SDK as a comparator

Every client runs in a subprocess of its own, against a bench server in another process;
rounds interleave the clients (alternating who goes first) so slow drift on a shared
machine hits them alike. Each figure is the median over rounds; a ratio is the ratio of
the medians, and the ``spread`` column gives the lowest and highest per-round ratio.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import datetime
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python benchmarks/run.py`
    sys.path.insert(0, str(REPO))


from benchmarks.clients import compile_rakka_config, openai_available  # noqa: E402
from benchmarks.payloads import json_chunks_per_stream  # noqa: E402


@functools.cache
def _workdir() -> str:
    # Children start in an empty directory: `python -m`/`-c` put their cwd first on
    # sys.path, which would let the checkout shadow a patched copy given with --compare.
    path = tempfile.mkdtemp(prefix="rakka-bench-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@dataclass(frozen=True)
class Plan:
    rounds: int
    chunks: int  # content chunks per stream
    chat_requests: int
    chat_warmup: int
    stream_requests: int
    stream_warmup: int
    rss_waves: int
    import_runs: int
    concurrency: tuple[int, ...] = (1, 16)
    rss_streams: int = 16


FULL = Plan(
    rounds=5,
    chunks=100,
    chat_requests=2000,
    chat_warmup=100,
    stream_requests=320,
    stream_warmup=32,
    rss_waves=3,
    import_runs=11,
)
SMOKE = Plan(
    rounds=1,
    chunks=20,
    chat_requests=32,
    chat_warmup=4,
    stream_requests=16,
    stream_warmup=16,
    rss_waves=1,
    import_runs=3,
)


def _env(prefix: str | None = None) -> dict[str, str]:
    # The repo goes after any PYTHONPATH the caller set, so a patched copy of the packages
    # (``--compare``, or PYTHONPATH=...) wins over the checkout.
    # A copy's own OpenAI provider too (a worktree's providers/openai), else the
    # checkout's installed one would be paired with the copy's core.
    env = dict(os.environ)
    own = None if prefix is None else Path(prefix) / "providers" / "openai"
    provider = str(own) if own is not None and own.is_dir() else None
    parts = [prefix, provider, env.get("PYTHONPATH"), str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def _cpus() -> tuple[set[int] | None, set[int] | None]:
    """``--pin``: CPUs for the bench server and for the measured client, one core each
    when there are two or more. Left to the scheduler, a ping-pong at concurrency 1 lands
    on one core in some rounds and on two in others, and the client's CPU per request
    moves by up to 2x between rounds (seen on this project's 2-core VMs). Pinned, that
    noise goes, but so does the cross-core cost of handing the GIL between 16 threads,
    which the floor saves more of than rakka: the default leaves placement to the
    scheduler, as a deployed client has it."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


@dataclass
class Pinning:
    server: set[int] | None = None
    client: set[int] | None = None


PIN = Pinning()  # set by --pin


def _pinned(cpus: set[int] | None) -> Any:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


class BenchServerProcess:
    """The bench server in a child process; it exits when we close its stdin."""

    def __init__(self, chunks: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.server", "--chunks", str(chunks)],
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
            raise RuntimeError(f"bench server did not start (said {line!r})")
        self.port = int(line[1])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_worker(
    args: list[str], pythonpath: str | None = None, compiled: str | None = None
) -> dict[str, Any]:
    env = _env(pythonpath)
    if compiled is not None:
        env["RAKKA_BENCH_COMPILED"] = compiled
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", *args],
        preexec_fn=_pinned(PIN.client),
        cwd=_workdir(),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {args[:2]} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _wall(cmd: list[str], pythonpath: str | None = None) -> float:
    env = _env(pythonpath)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=_workdir(), env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Contender:
    """One column of the table: a client kind, optionally run from a patched copy."""

    label: str
    kind: str  # floor | rakka | openai
    pythonpath: str | None = None


def measure_startup(runs: int, contenders: list[Contender]) -> dict[str, list[float]]:
    """Wall times of fresh interpreters, interleaved run by run so drift hits each alike."""
    py = sys.executable
    rakka = str(Path(py).parent / "rakka")
    commands: dict[str, tuple[list[str], str | None]] = {
        "bare": ([py, "-c", "pass"], None),
    }
    for c in contenders:
        if c.kind == "floor":
            commands[f"import:{c.label}"] = ([py, "-c", "import json, urllib3"], None)
        elif c.kind == "openai":
            commands[f"import:{c.label}"] = ([py, "-c", "import openai"], None)
        else:
            commands[f"import:{c.label}"] = ([py, "-c", "import rakka_runtime"], c.pythonpath)
            commands[f"runtime_class:{c.label}"] = (
                [py, "-c", "from rakka_runtime import Runtime"],
                c.pythonpath,
            )
            commands[f"help:{c.label}"] = ([rakka, "--help"], c.pythonpath)
    for cmd, path in commands.values():  # once each, untimed: warm the page cache and .pyc
        _wall(cmd, path)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (cmd, path) in commands.items():
            times[name].append(_wall(cmd, path))
    return times


# --- the report ---------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    unit: str
    values: dict[str, float]  # contender label -> median
    target: str = "info"
    verdict: str = "info"
    ratio: float | None = None  # rakka ÷ floor
    spread: tuple[float, float] | None = None  # lowest and highest per-round ratio


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _cpu_rows(data: dict[str, Any], labels: list[str], plan: Plan) -> list[Row]:
    rounds = data["rounds"]
    rows = []
    per_stream = json_chunks_per_stream(plan.chunks)
    for mode, what, unit_of, limit in (  # issue 15's targets
        ("chat", "non-streamed requests", 1, 1.3),
        ("stream", "streamed chunks", per_stream, 1.5),
    ):
        for conc in plan.concurrency:
            key = f"{mode}:{conc}"
            per_round: dict[str, list[float]] = {c: [] for c in labels}
            for rnd in rounds:
                for c in labels:
                    s = rnd[c][key]
                    # seconds per unit x 1e6 = milliseconds per 1,000 units
                    per_round[c].append(s["cpu_s"] / (s["requests"] * unit_of) * 1e6)
            values = {c: _median(per_round[c]) for c in labels}
            ratios = [r / f for r, f in zip(per_round["rakka"], per_round["floor"], strict=True)]
            ratio = values["rakka"] / values["floor"]
            rows.append(
                Row(
                    f"client CPU per 1,000 {what}, concurrency {conc}",
                    "ms",
                    values,
                    target=f"≤ {limit}x floor",
                    verdict="PASS" if ratio <= limit else "FAIL",
                    ratio=ratio,
                    spread=(min(ratios), max(ratios)),
                )
            )
    return rows


def _rss_rows(data: dict[str, Any], labels: list[str], plan: Plan) -> list[Row]:
    rss = data["rss"]
    peak = {c: _median([r["peak_rss_kib"] / 1024 for r in rss[c]]) for c in labels}
    grow = {
        c: _median([(r["peak_rss_kib"] - r["baseline_rss_kib"]) / 1024 for r in rss[c]])
        for c in labels
    }
    ratio = peak["rakka"] / peak["floor"]
    composed = [r["peak_rss_kib"] / 1024 for r in data.get("rss_composed", [])]
    extra = []
    if composed:
        extra.append(
            Row(
                f"peak RSS, {plan.rss_streams} concurrent streams, composing conf/ in the "
                "process (`Runtime.from_overrides`: Hydra, pydantic)",
                "MiB",
                {"floor": peak["floor"], "rakka": _median(composed)},
                ratio=_median(composed) / peak["floor"],
            )
        )
    return [
        Row(
            f"peak RSS, {plan.rss_streams} concurrent streams (ru_maxrss)",
            "MiB",
            peak,
            target="≤ 1.5x floor",
            verdict="PASS" if ratio <= 1.5 else "FAIL",
            ratio=ratio,
        ),
        Row(
            f"RSS growth from an idle warm client to {plan.rss_streams} open streams",
            "MiB",
            grow,
            ratio=_ratio(grow["rakka"], grow["floor"]),
        ),
        *extra,
    ]


def _connection_rows(data: dict[str, Any], labels: list[str], plan: Plan) -> list[Row]:
    rounds = data["rounds"]
    rows = []
    top = max(plan.concurrency)
    for conc in plan.concurrency:
        key = f"stream:{conc}"
        per_thread = {
            c: _median([rnd[c][key]["connections"] / conc for rnd in rounds]) for c in labels
        }
        rows.append(
            Row(
                f"connections opened per worker thread, streams at concurrency {conc}",
                "conns",
                per_thread,
                target="≤ 1 (+25%)",
                verdict="PASS" if per_thread["rakka"] <= 1.25 else "FAIL",
                ratio=_ratio(per_thread["rakka"], per_thread["floor"]),
            )
        )
    key = f"stream:{top}"
    per_stream = {
        c: _median([rnd[c][key]["connections"] / rnd[c][key]["total_requests"] for rnd in rounds])
        for c in labels
    }
    rows.append(
        Row(
            f"connections opened per stream, concurrency {top}",
            "conns",
            per_stream,
            ratio=_ratio(per_stream["rakka"], per_stream["floor"]),
        )
    )
    return rows


def _startup_rows(data: dict[str, Any], labels: list[str]) -> list[Row]:
    startup = data["startup"]
    bare = _median(startup["bare"])

    def over_bare(prefix: str) -> dict[str, float]:
        return {
            c: _median(startup[f"{prefix}:{c}"]) - bare
            for c in labels
            if f"{prefix}:{c}" in startup
        }

    imports = over_bare("import")
    runtime_class = over_bare("runtime_class")
    runtime_class["floor"] = imports["floor"]
    helps = {c: _median(startup[f"help:{c}"]) for c in labels if f"help:{c}" in startup}
    helps["floor"] = bare
    return [
        Row(
            "import time over bare `python -c pass` "
            "(floor: `import json, urllib3`; rakka: `import rakka_runtime`)",
            "s",
            imports,
            target="rakka ≤ 0.1 s",  # issue 15
            verdict="PASS" if imports["rakka"] <= 0.1 else "FAIL",
            ratio=_ratio(imports["rakka"], imports["floor"]),
        ),
        Row(
            "import time of `from rakka_runtime import Runtime` over bare python",
            "s",
            runtime_class,
            ratio=_ratio(runtime_class["rakka"], imports["floor"]),
        ),
        Row(
            "`rakka --help` wall time (floor: bare `python -c pass`)",
            "s",
            helps,
            target="rakka < 0.3 s",  # issue 15
            verdict="PASS" if helps["rakka"] < 0.3 else "FAIL",
            ratio=helps["rakka"] / bare,
        ),
    ]


def _client_rows(data: dict[str, Any], labels: list[str], plan: Plan) -> list[Row]:
    rounds = data["rounds"]
    first = f"chat:{plan.concurrency[0]}"
    setup = {c: _median([rnd[c][first]["setup_s"] for rnd in rounds]) * 1000 for c in labels}
    rows = [
        Row(
            "building the client in a fresh process (lazy imports included)",
            "ms",
            setup,
            ratio=_ratio(setup["rakka"], setup["floor"]),
        )
    ]
    # Is the bench server fast enough? Its CPU per request next to the client's.
    top = max(plan.concurrency)
    for mode, what in (("chat", "non-streamed"), ("stream", "streamed")):
        key = f"{mode}:{top}"
        share = {
            c: _median([rnd[c][key]["server_cpu_s"] / rnd[c][key]["cpu_s"] for rnd in rounds])
            for c in labels
        }
        rows.append(Row(f"bench server CPU ÷ client CPU, {what}, concurrency {top}", "x", share))
    return rows


def build_rows(data: dict[str, Any], labels: list[str], plan: Plan) -> list[Row]:
    rows = _cpu_rows(data, labels, plan)
    if "rss" in data:
        rows += _rss_rows(data, labels, plan)
    rows += _connection_rows(data, labels, plan)
    if "startup" in data:
        rows += _startup_rows(data, labels)
    rows += _client_rows(data, labels, plan)
    return rows


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def render_table(rows: list[Row], labels: list[str]) -> str:
    extra = [c for c in labels if c not in ("floor", "rakka")]
    head = ["metric", "unit", "floor", "rakka", "rakka ÷ floor", "spread", "target", "result"]
    for c in extra:
        head += [c, f"{c} ÷ floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        spread = "—" if row.spread is None else f"{_fmt(row.spread[0])}-{_fmt(row.spread[1])}"
        cells = [
            row.metric,
            row.unit,
            _fmt(row.values.get("floor")),
            _fmt(row.values.get("rakka")),
            "—" if row.ratio is None else f"{_fmt(row.ratio)}x",
            spread,
            row.target,
            row.verdict,
        ]
        for c in extra:
            ratio = _ratio(row.values.get(c), row.values.get("floor"))
            cells += [_fmt(row.values.get(c)), "—" if ratio is None else f"{_fmt(ratio)}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "pinning": (
            "none"
            if PIN.server is None
            else f"bench server on CPUs {sorted(PIN.server)}, "
            f"clients on CPUs {sorted(PIN.client or ())}"
        ),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
    }


# --- driver -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (< 30 s)")
    parser.add_argument("--sdk", action="store_true", help="add the openai SDK comparator")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also run the rakka client from DIR (a copy of rakka_runtime/, "
        "rakka_provider_openai/ and conf/ with a patch), as column rakka@NAME",
    )
    parser.add_argument("--cpu-only", action="store_true", help="skip RSS and start-up rows")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the bench server and the clients to separate cores (less noise for A/B)",
    )
    parser.add_argument("--rounds", type=int, help="override the plan's rounds")
    parser.add_argument("--chunks", type=int, help="content chunks per stream")
    parser.add_argument("--json", metavar="FILE", help="write the raw results here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    return parser.parse_args(argv)


def contenders_from(args: argparse.Namespace) -> list[Contender]:
    contenders = [Contender("floor", "floor"), Contender("rakka", "rakka")]
    if args.sdk:
        if openai_available():
            contenders.append(Contender("openai", "openai"))
        else:
            print("openai SDK not installed: comparator skipped", file=sys.stderr)
    for spec in args.compare:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_dir():
            raise SystemExit(f"--compare wants NAME=DIR with an existing DIR, got {spec!r}")
        contenders.append(Contender(f"rakka@{name}", "rakka", str(Path(path).resolve())))
    return contenders


def collect(plan: Plan, contenders: list[Contender], cpu_only: bool) -> dict[str, Any]:
    scenarios: list[str] = []
    for mode, count, warmup in (
        ("chat", plan.chat_requests, plan.chat_warmup),
        ("stream", plan.stream_requests, plan.stream_warmup),
    ):
        for conc in plan.concurrency:
            scenarios += ["--scenario", f"{mode}:{conc}:{count}:{warmup}"]
    data: dict[str, Any] = {}
    rounds: list[dict[str, dict[str, Any]]] = []
    rss: dict[str, list[dict[str, Any]]] = {c.label: [] for c in contenders}
    rss_composed: list[dict[str, Any]] = []
    described: dict[str, Any] = {}
    server = BenchServerProcess(plan.chunks)
    compiled: dict[str, str] = {}
    try:
        # A serving process runs from a compiled config: compile once per contender (a
        # patched copy may compile differently), outside the measured processes.
        base_url = f"http://127.0.0.1:{server.port}/v1"
        for c in contenders:
            if c.kind == "rakka":
                compiled[c.label] = os.path.join(_workdir(), f"{c.label}.compiled.json")
                compile_rakka_config(base_url, compiled[c.label], _env(c.pythonpath))
        for i in range(plan.rounds):
            # Alternate who goes first, so a trend on a shared machine does not favour one.
            order = contenders if i % 2 == 0 else contenders[::-1]
            this_round: dict[str, dict[str, Any]] = {}
            for c in order:
                out = run_worker(
                    ["--client", c.kind, "--port", str(server.port), *scenarios],
                    c.pythonpath,
                    compiled.get(c.label),
                )
                this_round[c.label] = {
                    f"{s['mode']}:{s['concurrency']}": s for s in out["scenarios"]
                }
                described[c.label] = out["scenarios"][0]["info"]
            rounds.append(this_round)
            if not cpu_only:
                for c in order:
                    out = run_worker(
                        [
                            "--client",
                            c.kind,
                            "--port",
                            str(server.port),
                            "--job",
                            "rss",
                            "--concurrency",
                            str(plan.rss_streams),
                            "--waves",
                            str(plan.rss_waves),
                        ],
                        c.pythonpath,
                        compiled.get(c.label),
                    )
                    rss[c.label].append(out["rss"])
                rss_args = ["--port", str(server.port), "--job", "rss"]
                rss_args += ["--concurrency", str(plan.rss_streams)]
                rss_args += ["--waves", str(plan.rss_waves)]
                out = run_worker(["--client", "rakka-composed", *rss_args])
                rss_composed.append(out["rss"])
            print(f"round {i + 1}/{plan.rounds} done", file=sys.stderr, flush=True)
    finally:
        server.stop()
    data["rounds"] = rounds
    data["described"] = described
    if not cpu_only:
        data["rss"] = rss
        data["rss_composed"] = rss_composed
        data["startup"] = measure_startup(plan.import_runs, contenders)
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pin:
        PIN.server, PIN.client = _cpus()
    plan = SMOKE if args.smoke else FULL
    if args.rounds or args.chunks:
        plan = dataclasses.replace(
            plan, rounds=args.rounds or plan.rounds, chunks=args.chunks or plan.chunks
        )
    contenders = contenders_from(args)
    labels = [c.label for c in contenders]
    started = time.perf_counter()
    info = machine()
    data = collect(plan, contenders, args.cpu_only)
    info["loadavg_end"] = os.getloadavg()
    info["elapsed_s"] = time.perf_counter() - started
    data.update(
        plan=dataclasses.asdict(plan),
        machine=info,
        contenders=[dataclasses.asdict(c) for c in contenders],
        command=" ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
    )
    rows = build_rows(data, labels, plan)
    data["rows"] = [dataclasses.asdict(row) for row in rows]

    mode = "smoke" if args.smoke else "full"
    print(
        f"## rakka-runtime benchmarks ({mode}: {plan.rounds} round(s), {plan.chunks} content "
        f"chunks per stream = {json_chunks_per_stream(plan.chunks)} JSON chunks)\n"
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
    described = data["described"]
    rakka = described.get("rakka", {})
    print(f"- rakka plugins: {', '.join(rakka.get('plugins', [])) or 'none'}")
    print(f"- rakka policies: {', '.join(rakka.get('policies', [])) or 'none'}")
    for c in contenders:
        if c.kind != "rakka":
            versions = ", ".join(f"{k} {v}" for k, v in described.get(c.label, {}).items())
            print(f"- {c.label}: {versions}")
        elif c.pythonpath:
            print(f"- {c.label}: rakka client run from {c.pythonpath}")
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1, default=str) + "\n")
    failed = [row.metric for row in rows if row.verdict == "FAIL"]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
