"""``rakka chat``: one request, streamed to stdout, usage and cost on stderr."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from rakka_runtime.cli.common import (
    EXIT_FAILED,
    compiled_option,
    config_dir_option,
    fail,
    open_runtime,
)

if TYPE_CHECKING:
    from rakka_runtime.errors import InferenceError
    from rakka_runtime.types import ChatResult


@click.command()
@click.argument("prompt")
@click.argument("overrides", nargs=-1)
@click.option(
    "-m",
    "--model",
    default=None,
    help="Model group or deployment to route to (one deployment: the model to ask for).",
)
@click.option("--system", default=None, help="A system message to send first.")
@click.option("--max-tokens", type=int, default=None, help="Bound the reply's length.")
@click.option("--temperature", type=float, default=None)
@click.option("--no-stream", is_flag=True, help="Wait for the whole reply instead of streaming.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result.")
@click.option(
    "--logprobs",
    is_flag=True,
    help="Ask for token log-probabilities (shown with --json, under 'logprobs').",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT while running (0: any free port).",
)
@config_dir_option
@compiled_option
def chat(
    prompt: str,
    overrides: tuple[str, ...],
    model: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    no_stream: bool,
    as_json: bool,
    logprobs: bool,
    metrics_port: int | None,
    config_dir: str | None,
    compiled: str | None,
) -> None:
    """Send PROMPT to the deployment; stream the reply to stdout, usage and cost to stderr."""
    from rakka_runtime.errors import InferenceError, InvalidRequest

    runtime = open_runtime(overrides, config_dir, compiled)
    with runtime, _metrics_endpoint(metrics_port):
        fields: dict[str, Any] = {}
        if max_tokens is not None:
            fields["max_tokens"] = max_tokens
        if temperature is not None:
            fields["temperature"] = temperature
        if logprobs:
            fields["extra_body"] = {"logprobs": True}
        try:
            request = runtime.request(
                prompt, stream=not no_stream, model=model, system=system, **fields
            )
        except InvalidRequest as exc:
            fail(str(exc))
        handle = runtime.execute(request)
        out = sys.stdout
        try:
            for chunk in handle:
                if as_json:
                    continue
                # A refusal is the model's answer (not an error): shown like text.
                piece = chunk.text_delta or chunk.refusal_delta
                if piece:
                    out.write(piece)
                    out.flush()
            result = handle.result()
        except InferenceError as exc:
            if as_json:
                click.echo(json.dumps(_json_result(exc.partial, exc, request.request_id)))
            else:
                if request.stream and exc.partial is not None and exc.partial.text:
                    out.write("\n")  # end the partial line before the error report
                    out.flush()
                click.echo(f"error: {exc.kind}: {exc.message}", err=True)
            raise SystemExit(EXIT_FAILED) from None
        if as_json:
            click.echo(json.dumps(_json_result(result, None, request.request_id)))
            return
        if not request.stream:
            out.write(result.text or result.refusal or "")
        out.write("\n")
        out.flush()
        click.echo(_summary_line(result, result.deployment or runtime.deployment.name), err=True)


@contextlib.contextmanager
def _metrics_endpoint(port: int | None) -> Iterator[None]:
    """Serve /metrics for the command's lifetime when ``--metrics-port`` is given."""
    if port is None:
        yield
        return
    from rakka_runtime.metrics import MetricsUnavailable, serve_metrics

    try:
        server = serve_metrics(port)
    except MetricsUnavailable as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"--metrics-port {port}: {exc.strerror or exc}")
    click.echo(f"metrics: {server.url}", err=True)
    with server:
        yield


def _json_result(
    result: ChatResult | None, error: InferenceError | None, request_id: str
) -> dict[str, Any]:
    usage = result.usage.as_dict() if result is not None and result.usage is not None else None
    attempts = len(error.attempts) if error is not None and error.attempts else None
    return {
        "text": result.text if result is not None else "",
        "finish_reason": result.finish_reason if result is not None else None,
        "refusal": result.refusal if result is not None else None,
        "logprobs": _logprobs(result),
        "tool_calls": [c.as_dict() for c in result.tool_calls] if result is not None else [],
        "usage": usage,
        "cost_usd": result.cost_usd if result is not None else None,
        "attempts": (result.attempts if result is not None and error is None else attempts or 1),
        "latency_ms": _round(result.latency_ms) if result is not None else None,
        "ttft_ms": _round(result.ttft_ms) if result is not None else None,
        "request_id": (result.provider_request_id if result is not None else None)
        or (error.request_id if error is not None else None)
        or request_id,
        "error": error.to_dict() if error is not None else None,
        **_routed(result, error),
    }


def _routed(result: ChatResult | None, error: InferenceError | None) -> dict[str, Any]:
    """A routed request's deployment and every deployment it tried (nothing otherwise)."""
    tried = error.deployment_attempts if error is not None else None
    if not tried and result is not None:
        tried = result.deployment_attempts
    if not tried:
        return {}
    return {
        "deployment": result.deployment if result is not None and error is None else None,
        "deployment_attempts": [item.as_dict() for item in tried],
    }


def _logprobs(result: ChatResult | None) -> dict[str, Any] | None:
    """The API's ``logprobs`` object (``content`` and ``refusal``), or None if none came."""
    if result is None or (result.logprobs is None and result.refusal_logprobs is None):
        return None
    return {"content": result.logprobs, "refusal": result.refusal_logprobs}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _summary_line(result: ChatResult, deployment: str) -> str:
    usage = result.usage
    tokens = (
        "usage: not reported"
        if usage is None
        else (
            f"usage: {usage.input_tokens} in ({usage.cached_tokens} cached), "
            f"{usage.output_tokens} out ({usage.reasoning_tokens} reasoning)"
        )
    )
    cost = "cost: unknown" if result.cost_usd is None else f"cost: ${result.cost_usd:.6f}"
    if result.cost_estimated:
        cost += " (estimated)"
    if result.cost_usd is None and usage is not None:
        cost += f" (no price for {result.model or 'this model'})"
    ttft = "" if result.ttft_ms is None else f", first token {result.ttft_ms:.0f} ms"
    timing = f"{result.latency_ms or 0:.0f} ms{ttft}, attempts {result.attempts}"
    refused = " · the model refused" if result.refusal is not None else ""
    return f"[{deployment} · {result.model or '?'}] {tokens} · {cost} · {timing}{refused}"
