"""Incremental decoder for ``text/event-stream`` bodies (the WHATWG event-stream rules).

It runs on every streamed byte, so it works on bytes and hands whole blocks to C: line ends
are found with ``in``/``rfind``/``split``, and UTF-8 is decoded once per block of complete
lines. That is equivalent to decoding line by line, because CR and LF never occur inside a
multi-byte UTF-8 sequence: a block that ends on a line end never cuts a character, and a
character cut by a read boundary simply waits in the unfinished tail.

Deliberate readings of the spec:

* ``id`` persists: every event carries the stream's last event id, as ``lastEventId`` does in
  browsers (an ``id`` holding NUL is ignored; an empty ``id`` resets it to ``""``).
* ``retry`` is stream state (``SSEDecoder.retry``); ``SSEEvent.retry`` is set only on the event
  whose block carried the field, so a caller need not diff it.
* An event cut off by the end of the stream is discarded; :attr:`SSEDecoder.had_partial` tells
  the caller it happened, which is how a cut stream is told apart from a finished one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

__all__ = ["SSEDecoder", "SSEEvent"]

_BOM = b"\xef\xbb\xbf"
_CR = 0x0D
_LF = 0x0A
_CUT = "\n\ndata: "


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event; ``data`` lines are joined with ``"\\n"``."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed raw body bytes in any split; get back the events each read completed.

    :ivar last_event_id: the last ``id`` field seen (``None`` until one arrives).
    :ivar retry: the last valid ``retry`` field in milliseconds (``None`` until one arrives).
    :ivar had_partial: set by :meth:`close` when an unfinished event was discarded.
    """

    __slots__ = (
        "_at_start",
        "_data",
        "_event",
        "_open",
        "_parts",
        "_retry",
        "_skip_lf",
        "had_partial",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        # Reads that held no line end yet; joined only once a line end arrives, so a long
        # line trickling in byte by byte costs O(n), not O(n^2).
        self._parts: list[bytes] = []
        # Data lines of the event being built; None means no data field yet (not dispatched).
        self._data: list[str] | None = None
        self._event = ""
        self._retry: int | None = None
        # A field line arrived since the last blank line: an event is under way.
        self._open = False
        # The previous read ended in CR, so an LF opening this read ends no extra line.
        self._skip_lf = False
        # The BOM check is still due (the stream's first three bytes may span reads).
        self._at_start = True
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self.had_partial = False

    @property
    def has_pending(self) -> bool:
        """Whether bytes or fields of an event not yet dispatched are buffered."""
        return self._open or bool(self._parts)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume one read; return the events it completed, in order."""
        if self._skip_lf:
            if not chunk:
                return []
            self._skip_lf = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
        if self._at_start:
            chunk = self._strip_bom(chunk)
        if not chunk:
            return []
        # Membership of an int byte is a plain memchr; ``b"\r" in chunk`` costs several times
        # more, which shows when every read is one small event.
        if _CR in chunk:
            # Rare on real APIs: normalise CRLF and lone CR to LF. A CR closing the read is a
            # line end already; remember it so a following LF is not a second (blank) line.
            self._skip_lf = chunk[-1] == _CR
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n") + 1
        if not end:
            self._parts.append(chunk)
            return []
        if self._parts:
            self._parts.append(chunk[:end])
            block = b"".join(self._parts)
            self._parts = []
        else:
            block = chunk[:end]
        if end < len(chunk):
            self._parts.append(chunk[end:])
        return self._events(block.decode("utf-8", "replace"))

    def close(self) -> list[SSEEvent]:
        """End of stream: discard any unfinished event (recorded in ``had_partial``)."""
        self.had_partial = self.has_pending
        self._parts = []
        self._reset()
        return []

    def _strip_bom(self, chunk: bytes) -> bytes:
        head = b"".join(self._parts) + chunk if self._parts else chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._parts = [head] if head else []
            return b""
        self._at_start = False
        self._parts = []
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _events(self, text: str) -> list[SSEEvent]:
        """Process ``text``: complete lines, each ending in LF."""
        out: list[SSEEvent] = []
        if self._data is None and text.startswith("data: ") and text.find("\n") == len(text) - 2:
            # One whole single-line event (the text ends in LF, so this means "data: v\n\n"):
            # what a live stream's reads usually hold.
            out.append(
                SSEEvent(text[6:-2], self._event or "message", self.last_event_id, self._retry)
            )
            if self._open:
                self._reset()
            return out
        # Cutting at "blank line, then a data line" yields, for the usual stream, exactly the
        # payloads: no per-line parsing, no prefix slicing. Every cut is a dispatch followed by
        # a fresh event that starts with a data line, so each piece after the first is the
        # value of that data line, plus the rest of its event's lines when it holds a LF.
        pieces = text.split(_CUT)
        if len(pieces) == 1:
            self._lines(text[:-1].split("\n"), out)
            return out
        first = pieces[0]
        if self._data is None and first.startswith("data: ") and "\n" not in first:
            out.append(
                SSEEvent(first[6:], self._event or "message", self.last_event_id, self._retry)
            )
            self._reset()
        else:
            self._lines(first.split("\n"), out)
            self._dispatch(out)
        last_id = self.last_event_id
        tail = pieces.pop()
        for piece in islice(pieces, 1, None):
            if "\n" not in piece:
                out.append(SSEEvent(piece, "message", last_id, None))
            else:
                self._data_first(piece.split("\n"), out)
                self._dispatch(out)
                last_id = self.last_event_id
        # The text ends in LF, so the last piece does too: drop the empty string after it.
        self._data_first(tail[:-1].split("\n"), out)
        return out

    def _data_first(self, lines: list[str], out: list[SSEEvent]) -> None:
        # Lines of a piece that follows a cut: the state is fresh and lines[0] is a data value.
        self._data = [lines[0]]
        self._open = True
        self._lines(islice(lines, 1, None), out)

    def _dispatch(self, out: list[SSEEvent]) -> None:
        # No data field means no event: the spec drops those (e.g. a lone ``retry:`` block).
        if self._data is not None:
            data = "\n".join(self._data)
            out.append(SSEEvent(data, self._event or "message", self.last_event_id, self._retry))
        self._reset()

    def _reset(self) -> None:
        self._data = None
        self._event = ""
        self._retry = None
        self._open = False

    def _lines(self, lines: Iterable[str], out: list[SSEEvent]) -> None:
        for line in lines:
            if not line:
                self._dispatch(out)
                continue
            if line.startswith("data: "):
                self._add_data(line[6:])
                continue
            colon = line.find(":")
            if colon == 0:
                continue  # comment (keep-alives such as ": ping")
            if colon < 0:
                name, value = line, ""
            else:
                name, value = line[:colon], line[colon + 1 :]
                if value.startswith(" "):
                    value = value[1:]
            if name == "data":
                self._add_data(value)
                continue
            self._open = True
            if name == "event":
                self._event = value
            elif name == "id":
                if "\0" not in value:
                    self.last_event_id = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self._retry = self.retry = int(value)
            # Any other field is ignored, as the spec says.

    def _add_data(self, value: str) -> None:
        self._open = True
        if self._data is None:
            self._data = [value]
        else:
            self._data.append(value)
