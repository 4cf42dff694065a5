"""``rakka anthropic-emulator``: run the emulator in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import Emulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rakka anthropic-emulator",
        description="Serve an Anthropic Messages API (POST /v1/messages) emulator.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: loopback only)"
    )
    parser.add_argument("--port", type=int, default=8081, help="port (0 = any free port)")
    parser.add_argument(
        "--key",
        action="append",
        dest="keys",
        metavar="KEY",
        help="an accepted API key (repeatable); default: accept any key",
    )
    parser.add_argument("--key-file", help="file holding the accepted key, re-read on change")
    parser.add_argument(
        "--key-grace",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long a rotated-out key stays valid (default 1.0)",
    )
    parser.add_argument("--model", default="claude-sonnet-4-5", help="default model name")
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="pause between streamed events",
    )
    parser.add_argument("--rpm", type=int, default=4_000, help="requests per minute reported")
    parser.add_argument(
        "--itpm", type=int, default=2_000_000, help="input tokens per minute reported"
    )
    parser.add_argument(
        "--otpm", type=int, default=400_000, help="output tokens per minute reported"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        emulator = Emulator(
            args.host,
            args.port,
            keys=args.keys,
            key_file=args.key_file,
            key_grace=args.key_grace,
            model=args.model,
            chunk_delay=args.chunk_delay,
            requests_per_minute=args.rpm,
            input_tokens_per_minute=args.itpm,
            output_tokens_per_minute=args.otpm,
        ).start()
    except (OSError, ValueError) as exc:
        print(f"rakka anthropic-emulator: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_term(signum: int, frame: FrameType | None) -> None:
            done.set()

        previous = signal.signal(signal.SIGTERM, on_term)
    print(f"rakka anthropic-emulator listening on {emulator.url}", flush=True)
    try:
        while not done.wait(0.5):  # a timed wait keeps Ctrl-C responsive everywhere
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
