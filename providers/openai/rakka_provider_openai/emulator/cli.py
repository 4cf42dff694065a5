"""``rakka emulator``: run the emulator in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import Emulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rakka emulator",
        description="Serve an OpenAI / Azure OpenAI compatible chat-completions emulator.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: loopback only)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (0 = any free port)")
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
    parser.add_argument("--scenario", help="YAML or JSON file of fault rules")
    parser.add_argument("--model", default="gpt-4o-mini", help="model name to report")
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="pause between streamed chunks",
    )
    parser.add_argument("--rpm", type=int, default=10_000, help="requests per minute reported")
    parser.add_argument("--tpm", type=int, default=10_000_000, help="tokens per minute reported")
    parser.add_argument(
        "--enforce-limits", action="store_true", help="answer 429 when the rpm/tpm bucket is empty"
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
            scenario=args.scenario,
            model=args.model,
            chunk_delay=args.chunk_delay,
            requests_per_minute=args.rpm,
            tokens_per_minute=args.tpm,
            enforce_limits=args.enforce_limits,
        ).start()
    except (OSError, ValueError) as exc:
        print(f"rakka emulator: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_term(signum: int, frame: FrameType | None) -> None:
            done.set()

        previous = signal.signal(signal.SIGTERM, on_term)
    print(
        f"rakka emulator listening on {emulator.url} (OpenAI base URL {emulator.base_url})",
        flush=True,
    )
    try:
        # A timed wait keeps the main thread responsive to Ctrl-C on every platform.
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
