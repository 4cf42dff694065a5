"""Batch input: JSONL lines read as a stream and turned into :class:`BatchItem` values.

Two line shapes are accepted, told apart by their keys:

- OpenAI's Batch API line, ``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
  "body": {...}}``, where ``body`` is a chat.completions request;
- the plain form, ``{"custom_id"?, "messages", "model"?, ...}``: the body itself, with the
  custom_id beside it.

Either may carry ``"priority"`` (background, normal, high, critical) at the top level. A
line that cannot be sent becomes an item with ``error`` set, never an exception: one bad
line must not stop a batch of a million. Blank lines are skipped (they are not requests).
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from rakka_runtime.types import ExecuteBatch, SamplingParams, check_messages

PRIORITIES: Mapping[str, int] = {"background": 0, "normal": 1, "high": 2, "critical": 3}
NORMAL_PRIORITY = PRIORITIES["normal"]
STDIN = "-"

# The Batch API's own spelling, and the bare path some tools write.
_CHAT_URLS = frozenset({"/v1/chat/completions", "/chat/completions"})
_BATCH_KEYS = frozenset({"method", "url", "body"})
_OUR_KEYS = frozenset({"custom_id", "priority"})
_REQUEST_FIELDS = frozenset({"tools", "tool_choice", "response_format", "user"})
_SAMPLING_FIELDS = frozenset(SamplingParams.__dataclass_fields__)


@dataclass(slots=True)
class BatchItem:
    """One input line: a request to send, or the reason it cannot be sent.

    ``line`` is the 1-based line number (the position, for the Python API).
    """

    custom_id: str
    line: int
    priority: int = NORMAL_PRIORITY
    request: ExecuteBatch | None = None
    error: str | None = None


class InputError(Exception):
    """The input as a whole cannot be read (missing file, a directory, no permission)."""


class LineError(ValueError):
    """Why one line cannot be sent; the message already names the line."""


def open_input(path: str) -> IO[bytes]:
    """Open ``path`` for reading in binary (``-``: standard input)."""
    if path == STDIN:
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # the caller owns and closes it
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def count_requests(path: str) -> int | None:
    """Non-blank lines of ``path``, read once in constant memory.

    ``None`` (unknown) for stdin and anything that is not a regular file: counting a pipe
    (``<(zcat big.jsonl.gz)``) would consume the very lines the batch is to send.
    """
    if path == STDIN:
        return None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    count = 0
    with open_input(path) as stream:
        for raw in stream:
            if not raw.isspace():
                count += 1
    return count


def read_items(lines: Iterable[bytes]) -> Iterator[BatchItem]:
    """Parse lines lazily: one line is held at a time, whatever the file's size."""
    for number, raw in enumerate(lines, 1):
        if raw.isspace() or not raw:
            continue
        yield parse_line(raw, number)


def parse_line(raw: bytes, line: int) -> BatchItem:
    where = f"line {line}"
    try:
        obj = json.loads(raw, parse_constant=_Constant)
    except json.JSONDecodeError as exc:
        return _failed(
            f"line-{line}", line, f"{where}: not valid JSON ({exc.msg}, column {exc.colno})"
        )
    except (ValueError, RecursionError) as exc:  # bad UTF-8, nesting too deep
        return _failed(f"line-{line}", line, f"{where}: not valid JSON ({exc})")
    problem = _unsendable(raw, obj)
    if problem is not None:
        return _failed(_custom_id_or(obj, f"line-{line}"), line, f"{where}: {problem}")
    return parse_request(obj, line, where=where)


def _unsendable(raw: bytes, obj: object) -> str | None:
    """What in a decoded line Python's json accepts but no request can carry."""
    if isinstance(obj, _Constant):
        return f"not valid JSON ({obj.name} is not a JSON value)"
    constants = b"NaN" in raw or b"Infinity" in raw
    surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    if not constants and not surrogates:
        return None  # the usual line: no walk
    found = _find(obj, constants=constants, surrogates=surrogates)
    if isinstance(found, _Constant):
        return f"not valid JSON ({found.name} is not a JSON value)"
    if found is not None:
        # Valid JSON, but not Unicode: it could never be sent (UTF-8 cannot encode it).
        return (
            "holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair), "
            "which is not valid Unicode"
        )
    return None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""Only an escape can put a surrogate into a decoded line (raw UTF-8 cannot carry one):
lines without one skip the walk."""


class _Constant:
    """``NaN``/``Infinity``/``-Infinity`` as decoded: json accepts them, JSON (RFC 8259)
    does not, and a request holding one could not be sent."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _find(value: object, *, constants: bool, surrogates: bool) -> object | None:
    """The first non-JSON constant, or a string with a lone surrogate, in ``value``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Constant):
            if constants:
                return item
        elif isinstance(item, str):
            if surrogates and any("\ud800" <= char <= "\udfff" for char in item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _custom_id_or(obj: object, default: str) -> str:
    if isinstance(obj, dict):
        custom_id = obj.get("custom_id")
        if (
            isinstance(custom_id, str)
            and custom_id
            and _find(custom_id, constants=False, surrogates=True) is None
        ):
            return custom_id
    return default


def parse_request(obj: object, line: int, *, where: str | None = None) -> BatchItem:
    """An item from a decoded line (or a dict given to the Python API)."""
    where = where or f"line {line}"
    default_id = f"line-{line}"
    if not isinstance(obj, Mapping):
        return _failed(default_id, line, f"{where}: expected a JSON object, got {_type(obj)}")
    custom_id = obj.get("custom_id", default_id)
    if not isinstance(custom_id, str) or not custom_id:
        return _failed(default_id, line, f"{where}: custom_id must be a non-empty string")
    try:
        priority = _priority(obj.get("priority"), where)
        body = _body(obj, where)
        request = build_request(body, where)
    except LineError as exc:
        return _failed(custom_id, line, str(exc))
    return BatchItem(custom_id, line, priority, request)


def build_request(body: Mapping[str, Any], where: str) -> ExecuteBatch:
    """A chat.completions body as an :class:`ExecuteBatch`.

    ``stream`` defaults to false: a batch reads whole answers, and a stream would only add
    framing to parse. ``max_completion_tokens`` and ``max_tokens`` both set the limit (the
    runtime sends the spelling the model wants). Fields the runtime has no slot for
    (``logprobs``, ``reasoning_effort``, ``metadata``, ...) go through ``extra_body``.
    """
    messages = body.get("messages")
    if messages is None:
        raise LineError(f"{where}: 'messages' is required")
    if not isinstance(messages, list):
        raise LineError(f"{where}: 'messages' must be a list, got {_type(messages)}")
    try:
        check_messages(messages)
    except ValueError as exc:
        raise LineError(f"{where}: {exc}") from None
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise LineError(f"{where}: 'model' must be a non-empty string")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise LineError(f"{where}: 'stream' must be true or false")
    sampling: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in body.items():
        if key in ("messages", "model", "stream") or value is None:
            continue
        if key == "max_completion_tokens":
            sampling["max_tokens"] = value
        elif key in _SAMPLING_FIELDS:
            sampling.setdefault(key, value)
        elif key in _REQUEST_FIELDS:
            fields[key] = value
        else:
            extra[key] = value
    return ExecuteBatch(
        messages=messages,
        model=model,
        sampling=SamplingParams(**sampling),
        stream=stream,
        extra_body=extra or None,
        **fields,
    )


def _body(obj: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    if not _BATCH_KEYS.intersection(obj):
        return {key: value for key, value in obj.items() if key not in _OUR_KEYS}
    method = obj.get("method")
    if not isinstance(method, str) or method.upper() != "POST":
        raise LineError(f'{where}: method must be "POST", got {method!r}')
    url = obj.get("url")
    if url not in _CHAT_URLS:
        raise LineError(f'{where}: url {url!r} is not supported (use "/v1/chat/completions")')
    body = obj.get("body")
    if not isinstance(body, Mapping):
        raise LineError(f"{where}: 'body' must be a JSON object, got {_type(body)}")
    return body


def _priority(value: object, where: str) -> int:
    if value is None:
        return NORMAL_PRIORITY
    rank = PRIORITIES.get(value) if isinstance(value, str) else None
    if rank is None:
        raise LineError(
            f"{where}: priority {value!r} is not one of background, normal, high, critical"
        )
    return rank


def _failed(custom_id: str, line: int, message: str) -> BatchItem:
    return BatchItem(custom_id, line, NORMAL_PRIORITY, None, message)


def _type(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )
