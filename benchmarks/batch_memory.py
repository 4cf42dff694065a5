"""Peak memory of ``rakka batch`` as the input grows: it should stay flat.

Runs ``rakka batch`` in a fresh process per input size against ``rakka emulator`` (its own
process, so the server's memory is not counted) and reads each batch process's peak RSS
from ``os.wait4`` (the kernel's ``ru_maxrss`` of that one child). A last row re-runs the
largest size on its own finished output: the resume scan plus the id sets, nothing sent.

    .venv/bin/python benchmarks/batch_memory.py                 # 1,000 and 100,000 lines
    .venv/bin/python benchmarks/batch_memory.py --sizes 1000 10000 --concurrency 16

Prints a markdown table (for docs/benchmarks.md). Not a timed test: numbers vary by host.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
KEY_ENV = "RAKKA_BENCH_KEY"


@dataclass
class Run:
    label: str
    lines: int
    peak_rss_kib: int
    seconds: float
    sent: int


def rakka() -> list[str]:
    script = BIN / "rakka"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from rakka_runtime.cli import main; main()"]


def write_input(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(lines):
            body = {"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 3}
            if i % 2:
                handle.write(json.dumps({"custom_id": f"req-{i:07d}", **body}) + "\n")
            else:
                handle.write(
                    json.dumps(
                        {
                            "custom_id": f"req-{i:07d}",
                            "method": "POST",
                            "url": "/v1/chat/completions",
                            "body": body,
                        }
                    )
                    + "\n"
                )


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*rakka(), "emulator", "--port", "0", "--rpm", "1000000000", "--tpm", "100000000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    found = re.search(r"listening on (http://\S+)", proc.stdout.readline())
    if found is None:
        proc.kill()
        raise SystemExit("the emulator did not start")
    return proc, found.group(1)


def run_batch(label: str, source: Path, output: Path, url: str, concurrency: int) -> Run:
    env = dict(os.environ, **{KEY_ENV: "sk-bench"})
    before = sum(1 for _ in output.open("rb")) if output.exists() else 0
    command = [
        *rakka(),
        "batch",
        str(source),
        "-o",
        str(output),
        "-c",
        str(concurrency),
        "--progress",
        "off",
        "deployment=openai",
        f"deployment.variant.endpoint={url}/v1",
        f"deployment.api_key.name={KEY_ENV}",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{label}: rakka batch exited {proc.returncode}: {stderr[-2000:]!r}")
    lines = sum(1 for _ in source.open("rb"))
    after = sum(1 for _ in output.open("rb"))
    if after != lines:
        raise SystemExit(f"{label}: {after} output lines for {lines} input lines")
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return Run(label, lines, peak, seconds, after - before)


def table(runs: list[Run]) -> str:
    base = runs[0].peak_rss_kib
    rows = [
        "| run | input lines | peak RSS (MiB) | vs first (MiB) | wall (s) | sent/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        rate = f"{run.sent / run.seconds:,.0f}" if run.sent else "-"
        rows.append(
            f"| {run.label} | {run.lines:,} | {run.peak_rss_kib / 1024:.1f} | "
            f"{(run.peak_rss_kib - base) / 1024:+.1f} | {run.seconds:.1f} | {rate} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-resume-row", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rakka-batch-mem-"))
    emulator, url = start_emulator()
    runs: list[Run] = []
    try:
        for size in args.sizes:
            source = workdir / f"in-{size}.jsonl"
            output = workdir / f"out-{size}.jsonl"
            write_input(source, size)
            runs.append(run_batch(f"{size:,} lines", source, output, url, args.concurrency))
            print(f"done: {runs[-1]}", file=sys.stderr)
        if not args.no_resume_row:
            size = args.sizes[-1]
            runs.append(
                run_batch(
                    f"{size:,} lines, resumed (all done)",
                    workdir / f"in-{size}.jsonl",
                    workdir / f"out-{size}.jsonl",
                    url,
                    args.concurrency,
                )
            )
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"`rakka batch` peak RSS, concurrency {args.concurrency}, Python "
        f"{sys.version.split()[0]}, {sys.platform}\n"
    )
    print(table(runs))


if __name__ == "__main__":
    main()
