"""Running many chat requests from JSONL: ``rakka batch`` and :func:`execute_batch`.

Modules, one concept each: ``input`` (reading and parsing lines), ``window`` (the bounded
read-ahead queue), ``runner`` (scheduling, stop and grace), ``records`` (the output format),
``output`` (append-only writer, resume scan, torn-line repair), ``idset`` (compact id set),
``summary`` (totals and percentiles), ``progress`` (stderr display), ``api``.
"""

from __future__ import annotations

from rakka_runtime.batch.api import BatchResult, execute_batch

__all__ = ["BatchResult", "execute_batch"]
