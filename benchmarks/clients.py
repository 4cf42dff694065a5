"""The clients a benchmark compares, behind one small interface.

* ``floor``: what any Python client over urllib3 must do at least: encode the request with
  ``json.dumps``, POST it on a shared ``PoolManager``, read the body (streams: ``read1`` as
  bytes arrive, split lines, ``json.loads`` each ``data:`` line; otherwise ``json.loads`` of
  the body). No types, no policies, no error handling.
* ``rakka``: the project's client through the full ``Runtime`` (every plugin that is
  registered when it runs, default policies), from the built-in ``conf/`` with
  ``deployment=openai`` pointed at the bench server, the way a serving process runs it:
  compiled beforehand (``rakka config compile``, in another process: the harness passes
  the file in ``RAKKA_BENCH_COMPILED``) and loaded with ``Runtime.from_compiled``.
* ``rakka-composed``: the same, composing ``conf/`` in the measuring process
  (``Runtime.from_overrides``: Hydra and pydantic loaded), for the RSS info row.
* ``openai``: the official SDK (``max_retries=0``), as an optional comparator.

Each client is built inside the process that measures it, so its imports count there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any, Protocol

from benchmarks.payloads import MESSAGES, MODEL

OnFirst = Callable[[], object] | None


class BenchClient(Protocol):
    name: str

    def chat(self) -> None:
        """One non-streamed request, body fully parsed."""

    def stream(self, on_first: OnFirst = None) -> int:
        """One streamed request read to the end; returns the chunks the caller saw.

        ``on_first`` runs after the first chunk (the RSS probe parks streams there).
        """
        ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class FloorClient:
    name = "floor"

    def __init__(self, base_url: str, concurrency: int) -> None:
        import json

        import urllib3

        self._loads = json.loads
        self._dumps = json.dumps
        self.url = base_url + "/chat/completions"
        self.pool = urllib3.PoolManager(maxsize=max(1, concurrency), retries=False)
        self.headers = {"content-type": "application/json"}

    def _body(self, stream: bool) -> bytes:
        body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return self._dumps(body, separators=(",", ":")).encode()

    def chat(self) -> None:
        response = self.pool.urlopen(
            "POST", self.url, body=self._body(False), headers=self.headers, redirect=False
        )
        self._loads(response.data)

    def stream(self, on_first: OnFirst = None) -> int:
        loads = self._loads
        response = self.pool.urlopen(
            "POST",
            self.url,
            body=self._body(True),
            headers=self.headers,
            preload_content=False,
            redirect=False,
        )
        read1 = response.read1
        rest = b""
        seen = 0
        while True:
            data = read1(65536)
            if not data:
                break
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    loads(line[6:])
                    seen += 1
                    if seen == 1 and on_first is not None:
                        on_first()
        response.release_conn()
        return seen

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"urllib3": version("urllib3")}

    def close(self) -> None:
        self.pool.clear()


def rakka_overrides(base_url: str) -> list[str]:
    return [
        "deployment=openai",
        f"deployment.variant.endpoint={base_url}",
        "deployment.api_key=null",
    ]


def compile_rakka_config(base_url: str, output: str, env: dict[str, str] | None = None) -> None:
    """``rakka config compile`` in a child process (Hydra and pydantic stay out of ours)."""
    code = "from rakka_runtime.cli import main; main()"
    command = [sys.executable, "-c", code, "config", "compile", *rakka_overrides(base_url)]
    # Run from the output's folder: `-c` puts the cwd first on sys.path, and a checkout
    # there would shadow a patched copy (--compare).
    cwd = os.path.dirname(os.path.abspath(output))
    subprocess.run([*command, "-o", output], check=True, env=env, cwd=cwd, capture_output=True)


class RakkaClient:
    name = "rakka"

    def __init__(self, base_url: str, concurrency: int) -> None:
        from rakka_runtime.runtime import Runtime

        compiled = os.environ.get("RAKKA_BENCH_COMPILED")
        if compiled is None:  # run on its own (profiling): compile here, in a child
            compiled = os.path.join(tempfile.mkdtemp(prefix="rakka-bench-"), "rakka.json")
            compile_rakka_config(base_url, compiled)
        self.runtime = Runtime.from_compiled(compiled)

    def chat(self) -> None:
        self.runtime.chat(MESSAGES, stream=False)

    def stream(self, on_first: OnFirst = None) -> int:
        handle = self.runtime.stream(MESSAGES)
        seen = 0
        for _ in handle:
            seen += 1
            if seen == 1 and on_first is not None:
                on_first()
        handle.result()
        return seen

    def describe(self) -> dict[str, Any]:
        hooks = self.runtime.hooks
        # ``policies`` since the request core; ``middlewares`` before it (--compare with an
        # older copy of the library).
        policies = getattr(hooks, "policies", None) or hooks.middlewares
        return {
            "plugins": [f"{p.name} ({p.source})" for p in hooks.describe()],
            "policies": [
                getattr(m, "name", type(m).__name__) for m in policies(self.runtime.deployment)
            ],
        }

    def close(self) -> None:
        self.runtime.close()


class RakkaComposedClient(RakkaClient):
    name = "rakka-composed"

    def __init__(self, base_url: str, concurrency: int) -> None:
        from rakka_runtime.runtime import Runtime

        self.runtime = Runtime.from_overrides(rakka_overrides(base_url))


class OpenAIClient:
    name = "openai"

    def __init__(self, base_url: str, concurrency: int) -> None:
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
        # The SDK's TypedDict message params; ours are plain dicts of the same shape.
        self.messages: Any = MESSAGES

    def chat(self) -> None:
        self.client.chat.completions.create(model=MODEL, messages=self.messages)

    def stream(self, on_first: OnFirst = None) -> int:
        seen = 0
        # The context manager closes the response: without it httpx keeps the connection
        # checked out and the next stream opens a new one.
        with self.client.chat.completions.create(
            model=MODEL,
            messages=self.messages,
            stream=True,
            stream_options={"include_usage": True},
        ) as events:
            for _ in events:
                seen += 1
                if seen == 1 and on_first is not None:
                    on_first()
        return seen

    def describe(self) -> dict[str, Any]:
        import openai

        return {"openai": openai.__version__}

    def close(self) -> None:
        self.client.close()


CLIENTS: dict[str, type[FloorClient] | type[RakkaClient] | type[OpenAIClient]] = {
    "floor": FloorClient,
    "rakka": RakkaClient,
    "rakka-composed": RakkaComposedClient,
    "openai": OpenAIClient,
}


def openai_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openai") is not None


def run_parallel(work: Callable[[], object], total: int, concurrency: int) -> None:
    """Call ``work`` ``total`` times over ``concurrency`` threads (inline when 1)."""
    if concurrency <= 1:
        for _ in range(total):
            work()
        return
    per_thread, extra = divmod(total, concurrency)
    errors: list[BaseException] = []

    def loop(count: int) -> None:
        try:
            for _ in range(count):
                work()
        except BaseException as exc:  # reported by the caller, with the thread's traceback
            errors.append(exc)

    threads = [
        threading.Thread(target=loop, args=(per_thread + (1 if i < extra else 0),))
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
