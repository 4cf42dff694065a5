"""The output file: append-only writes, the resume scan, and repair of a torn last line.

Every record is one line written with one ``write`` on a file opened ``O_APPEND`` and
unbuffered, so a crash (even ``kill -9``) leaves whole lines plus at most one torn last
line. :func:`scan_output` cuts that torn tail off and collects the custom_ids that already
have a record; those lines are what a re-run skips. Durability against power loss needs
``fsync``, done at close only: per line it would cap a batch at the disk's flush rate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from rakka_runtime.batch.idset import IdSet
from rakka_runtime.batch.records import DUPLICATE_CUSTOM_ID, Record

_TAIL_BLOCK = 65536


@dataclass(slots=True)
class ResumeState:
    """What an existing output file already holds.

    ``done``: custom_ids with a record of their own (not a duplicate-id error record); the
    runner goes on to mark in the same table the ids it reads, so one table serves both;
    ``duplicates``: how many duplicate-id error records each duplicated id has (rare, so
    a plain dict); ``unreadable``: complete lines that are not a record (skipped, reported).
    """

    done: IdSet = field(default_factory=IdSet)
    duplicates: dict[str, int] = field(default_factory=dict)
    records: int = 0
    repaired_bytes: int = 0
    unreadable: int = 0


def repair_torn_tail(path: str) -> int:
    """Truncate ``path`` back to its last newline; returns how many bytes were cut."""
    try:
        handle = open(path, "r+b")  # noqa: SIM115 - closed below; missing file is fine
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - _TAIL_BLOCK)
            handle.seek(start)
            block = handle.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            handle.truncate(keep)
        return size - keep


def scan_output(path: str, on_record: Callable[[Record], None] | None = None) -> ResumeState:
    """Repair the tail, then read ``path`` line by line (``on_record`` sees every record)."""
    state = ResumeState(repaired_bytes=repair_torn_tail(path))
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; missing file is fine
    except FileNotFoundError:
        return state
    with handle:
        for raw in handle:
            if raw.isspace():
                continue
            try:
                record = json.loads(raw)
            except (ValueError, RecursionError):
                state.unreadable += 1
                continue
            custom_id = record.get("custom_id") if isinstance(record, dict) else None
            if not isinstance(custom_id, str):
                state.unreadable += 1
                continue
            state.records += 1
            error = record.get("error")
            if isinstance(error, dict) and error.get("code") == DUPLICATE_CUSTOM_ID:
                state.duplicates[custom_id] = state.duplicates.get(custom_id, 0) + 1
            else:
                state.done.mark_done(custom_id)
            if on_record is not None:
                on_record(record)
    return state


class RecordWriter:
    """Appends encoded lines; callers serialise calls (the runner holds one lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Unbuffered and O_APPEND: each line reaches the kernel in one write, at the end.
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()

    def write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            # A regular file takes the whole line in one call unless the disk fills up.
            written = self._file.write(view)
            if written is None:  # only for non-blocking files, which this is not
                raise OSError(f"could not write to {self.path}")
            view = view[written:]

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
