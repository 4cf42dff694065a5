"""What an injected fault puts on the wire before (or instead of) an answer: retry headers
and the error responses of the error faults."""

from __future__ import annotations

import time
from email.utils import formatdate

from . import errors
from .faults import Fault
from .limits import go_duration


def retry_headers(fault: Fault) -> list[bytes]:
    """``x-should-retry``, ``retry-after`` and ``retry-after-ms`` lines the spec asks for."""
    params = fault.params
    lines = []
    should_retry = fault.flag("should_retry")
    if should_retry is not None:
        lines.append(b"x-should-retry: true\r\n" if should_retry else b"x-should-retry: false\r\n")
    if fault.flag("retry_after_date"):
        when = formatdate(time.time() + fault.number("retry_after", 1.0), usegmt=True)
        lines.append(b"retry-after: %s\r\n" % when.encode())
    elif "retry_after" in params:
        lines.append(b"retry-after: %s\r\n" % params["retry_after"].encode())
    if "retry_after_ms" in params:
        lines.append(b"retry-after-ms: %s\r\n" % params["retry_after_ms"].encode())
    return lines


def error_answer(fault: Fault, *, azure: bool, model: str, rpm: int) -> tuple[int, bytes]:
    """Status and body of an error fault (one of :data:`.faults.ERROR_FAULTS`)."""
    shape = fault.params.get("shape")
    as_azure = azure if shape is None else shape == "azure"
    name = fault.name
    if name == "rate_limit":
        if shape == "azure":
            return 429, errors.azure_rate_limited(fault.params.get("retry_after", "1"))
        wait = fault.params.get("retry_after_ms")
        wait_text = f"{wait}ms" if wait else go_duration(fault.number("retry_after", 1.0))
        return 429, errors.rate_limited(
            model, kind="requests", limit=rpm, used=rpm, requested=1, wait=wait_text
        )
    if name == "insufficient_quota":
        return 429, errors.INSUFFICIENT_QUOTA
    if name == "server_error":
        status = fault.count("status", 500)
        return status, errors.server_error(status, azure=shape == "azure")
    if name == "http_error":
        status = fault.count("status", 400)
        return status, errors.http_error(status, model, azure=shape == "azure")
    if name == "context_length":
        return 400, errors.CONTEXT_LENGTH
    return 400, errors.AZURE_CONTENT_FILTER if as_azure else errors.OPENAI_CONTENT_FILTER
