"""The SSE decoder against the WHATWG event-stream rules, by example and by property."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from rakka_runtime.sse import SSEDecoder, SSEEvent

BOM = "\ufeff".encode()


def decode(*chunks: bytes) -> tuple[list[SSEEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events, decoder


def datas(*chunks: bytes) -> list[str]:
    return [e.data for e in decode(*chunks)[0]]


def bytewise(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


# --- line ends ------------------------------------------------------------------------------


def test_lf_line_ends() -> None:
    assert datas(b"data: a\n\ndata: b\n\n") == ["a", "b"]


def test_crlf_line_ends() -> None:
    assert datas(b"data: a\r\n\r\ndata: b\r\n\r\n") == ["a", "b"]


def test_cr_line_ends() -> None:
    assert datas(b"data: a\r\rdata: b\r\r") == ["a", "b"]


def test_mixed_line_ends() -> None:
    assert datas(b"data: a\r\n\ndata: b\r\rdata: c\n\r\n") == ["a", "b", "c"]


def test_cr_and_lf_split_across_reads_is_one_line_end() -> None:
    # Were CR|LF two line ends, the LF would be a blank line and dispatch "a" on its own.
    events, _ = decode(b"data: a\r", b"\ndata: b\r\n\r\n")
    assert [e.data for e in events] == ["a\nb"]


def test_cr_at_end_of_read_then_other_bytes() -> None:
    assert datas(b"data: a\r", b"\r") == ["a"]
    assert datas(b"data: a\r", b"", b"\n\r\n") == ["a"]


def test_lone_cr_then_blank_lf_in_next_read_is_consumed_once() -> None:
    # CR, then (next read) LF: one line end; the following LF is the blank line.
    assert datas(b"data: x\r", b"\n", b"\n") == ["x"]


# --- fields ---------------------------------------------------------------------------------


def test_multi_line_data_joined_with_lf() -> None:
    assert datas(b"data: line one\ndata: line two\ndata:\n\n") == ["line one\nline two\n"]


def test_one_leading_space_stripped_only() -> None:
    assert datas(b"data:no space\n\ndata:  two spaces\n\n") == ["no space", " two spaces"]


def test_comments_are_ignored() -> None:
    events, decoder = decode(b": keep-alive\n\n:\ndata: a\n: inside\n\n: trailing\n")
    assert [e.data for e in events] == ["a"]
    assert not decoder.had_partial


def test_field_without_colon_has_empty_value() -> None:
    assert datas(b"data\n\n") == [""]
    assert datas(b"data\ndata\n\n") == ["\n"]


def test_no_dispatch_without_data() -> None:
    events, decoder = decode(b"event: ping\nid: 7\nretry: 100\n\n\n\ndata: x\n\n")
    assert events == [SSEEvent("x", "message", "7", None)]
    assert decoder.retry == 100


def test_event_field_names_the_event_and_resets() -> None:
    events, _ = decode(b"event: delta\ndata: a\n\ndata: b\n\nevent:\ndata: c\n\n")
    assert [(e.event, e.data) for e in events] == [
        ("delta", "a"),
        ("message", "b"),
        ("message", "c"),
    ]


def test_id_persists_and_nul_ids_are_ignored() -> None:
    events, decoder = decode(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\x003\ndata: c\n\nid\ndata: d\n\n")
    assert [e.id for e in events] == ["1", "1", "1", ""]
    assert decoder.last_event_id == ""


def test_retry_digits_only() -> None:
    events, decoder = decode(
        b"retry: 2500\ndata: a\n\nretry: 12a\ndata: b\n\nretry: -1\nretry:\ndata: c\n\n",
        "retry: \u0661\ndata: d\n\n".encode(),  # a non-ASCII digit is not a digit here
    )
    assert [e.retry for e in events] == [2500, None, None, None]
    assert decoder.retry == 2500


def test_unknown_fields_ignored() -> None:
    assert decode(b"foo: bar\nData: no\ndata: yes\n\n")[0] == [SSEEvent("yes")]


def test_field_names_are_case_sensitive_and_exact() -> None:
    assert datas(b"data : spaced name\nDATA: upper\n\n") == []


# --- stream framing -------------------------------------------------------------------------


def test_leading_bom_skipped() -> None:
    assert datas(BOM + b"data: a\n\n") == ["a"]


def test_leading_bom_split_across_reads() -> None:
    body = BOM + b"data: a\n\n"
    assert datas(*bytewise(body)) == ["a"]
    assert datas(BOM[:2], BOM[2:] + b"data: a\n\n") == ["a"]


def test_only_first_bom_skipped() -> None:
    # A second BOM is the start of a field name, which no field matches.
    assert datas(BOM + BOM + b"data: a\n\ndata: b\n\n") == ["b"]


def test_bom_prefix_that_is_not_a_bom() -> None:
    assert datas(b"\xef", b"\xbbX\n\ndata: a\n\n") == ["a"]


def test_incomplete_event_discarded_and_reported() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: cut") == [SSEEvent("a")]
    assert decoder.has_pending
    assert decoder.close() == []
    assert decoder.had_partial
    assert not decoder.has_pending


def test_complete_lines_of_unfinished_event_are_pending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.has_pending
    decoder.close()
    assert decoder.had_partial


def test_clean_end_reports_no_partial() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\n")
    assert not decoder.has_pending
    decoder.close()
    assert not decoder.had_partial


def test_done_sentinel_passes_through_as_data() -> None:
    events, _ = decode(b'data: {"x":1}\n\ndata: [DONE]\n\n')
    assert [e.data for e in events] == ['{"x":1}', "[DONE]"]


def test_utf8_split_inside_a_character() -> None:
    body = "data: h\u00e9llo \u4e16\u754c \U0001f600\n\n".encode()
    for cut in range(len(body) + 1):
        assert datas(body[:cut], body[cut:]) == ["h\u00e9llo \u4e16\u754c \U0001f600"]


def test_invalid_utf8_replaced_not_raised() -> None:
    assert datas(b"data: a\xffb\n\n") == ["a\ufffdb"]


def test_events_returned_by_the_read_that_completes_them() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\ndata: b\n\ndata: c\n\ndata") == [
        SSEEvent("a"),
        SSEEvent("b"),
        SSEEvent("c"),
    ]
    assert decoder.feed(b": d\n\n") == [SSEEvent("d")]


def test_event_state_carried_between_reads() -> None:
    events, _ = decode(b"event: e\nid: 9\nretry: 5\n", b"data: a\n\ndata: b\n\n")
    assert events == [SSEEvent("a", "e", "9", 5), SSEEvent("b", "message", "9", None)]


def test_data_carried_into_a_read_of_whole_events() -> None:
    events, _ = decode(b"data: a\n", b"data: b\n\ndata: c\n\n")
    assert [e.data for e in events] == ["a\nb", "c"]


def test_id_applies_to_every_event_of_a_read() -> None:
    events, _ = decode(b"id: 5\ndata: a\n\ndata: b\n\ndata: c\n\n")
    assert [e.id for e in events] == ["5", "5", "5"]
    events, _ = decode(b"data: a\n\ndata: b\nid: 6\n\ndata: c\n\ndata: d\n\n")
    assert [e.id for e in events] == [None, "6", "6", "6"]


def test_many_blank_lines_between_events() -> None:
    assert datas(b"\n\n\ndata: a\n\n\n\n\ndata: b\n\n\n") == ["a", "b"]


def test_empty_data_value_after_event_cut() -> None:
    assert datas(b"data: a\n\ndata: \ndata: x\n\n") == ["a", "\nx"]


def test_openai_shaped_stream_in_16k_reads() -> None:
    payload = b'{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[]}'
    body = (b"data: " + payload + b"\n\n") * 500 + b"data: [DONE]\n\n"
    reads = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    events, decoder = decode(*reads)
    assert [e.data for e in events] == [payload.decode()] * 500 + ["[DONE]"]
    assert not decoder.had_partial


def test_long_line_trickling_in_is_buffered() -> None:
    value = "x" * 20_000
    body = f"data: {value}\n\n".encode()
    assert datas(*bytewise(body)) == [value]


# --- properties -----------------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
# No U+FEFF in names: at the very start of a stream it would be read as the BOM.
_NAME = st.text(st.characters(codec="utf-8", exclude_characters="\r\n:\ufeff"), max_size=8)
_ENDS = st.sampled_from(["\n", "\r\n", "\r"])


@dataclass
class Block:
    """One event block of the model: its lines, what they mean, then a blank line."""

    lines: list[str] = field(default_factory=list)
    data: list[str] | None = None
    event: str = ""
    id: str | None = None  # last valid id field in the block
    retry: int | None = None


@st.composite
def field_line(draw: st.DrawFn, block: Block) -> None:
    kind = draw(st.sampled_from(["data", "data", "data", "event", "id", "retry", "comment", "x"]))
    if kind == "comment":
        block.lines.append(":" + draw(_TEXT))
        return
    if kind == "x":
        name = draw(_NAME.filter(lambda n: n not in {"data", "event", "id", "retry", ""}))
        block.lines.append(f"{name}: {draw(_TEXT)}")
        return
    if kind == "retry":
        digits = draw(st.booleans())
        value = str(draw(st.integers(0, 10**6))) if digits else draw(_TEXT)
    elif kind == "id":
        value = draw(st.one_of(_TEXT, st.just("a\0b")))
    else:
        value = draw(_TEXT)
    # Forms that carry the same value: "name: v", "name:v" (unless v starts with a space),
    # and a bare "name" when v is empty.
    forms = [f"{kind}: {value}"]
    if not value.startswith(" "):
        forms.append(f"{kind}:{value}")
    if value == "":
        forms.append(kind)
    block.lines.append(draw(st.sampled_from(forms)))
    if kind == "data":
        block.data = [*(block.data or []), value]
    elif kind == "event":
        block.event = value
    elif kind == "id":
        if "\0" not in value:
            block.id = value
    elif value.isascii() and value.isdigit():
        block.retry = int(value)


@st.composite
def blocks(draw: st.DrawFn) -> Block:
    if draw(st.booleans()):
        # The shape real APIs send almost always, which the decoder takes a fast path for.
        value = draw(_TEXT)
        return Block(lines=[f"data: {value}"], data=[value])
    block = Block()
    for _ in range(draw(st.integers(0, 4))):
        draw(field_line(block))
    return block


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent], bool]:
    """A valid stream, the events it must yield, and whether it ends mid-event."""
    model = draw(st.lists(blocks(), max_size=10))
    partial = draw(st.one_of(st.none(), blocks().filter(lambda b: b.data is not None)))
    lines: list[str] = []
    expected: list[SSEEvent] = []
    last_id: str | None = None
    for block in model:
        lines += [*block.lines, ""]
        last_id = block.id if block.id is not None else last_id
        if block.data is not None:
            expected.append(
                SSEEvent("\n".join(block.data), block.event or "message", last_id, block.retry)
            )
    if partial is not None:
        lines += partial.lines
    out = [BOM.decode()] if draw(st.booleans()) else []
    previous = ""
    for i, line in enumerate(lines):
        end = draw(_ENDS)
        if previous == "\r" and line == "" and end == "\n":
            end = "\r"  # CR then LF would be one line end and swallow this blank line
        if partial is not None and i == len(lines) - 1 and draw(st.booleans()):
            end = ""  # the cut may fall mid-line too
        out.append(line + end)
        previous = end
    return "".join(out).encode(), expected, partial is not None


@given(streams())
@settings(max_examples=400)
def test_whole_stream_matches_model(stream: tuple[bytes, list[SSEEvent], bool]) -> None:
    body, expected, partial = stream
    events, decoder = decode(body)
    assert events == expected
    assert decoder.had_partial == partial


@given(streams(), st.data())
@settings(max_examples=400)
def test_any_split_yields_the_same_events(
    stream: tuple[bytes, list[SSEEvent], bool], data: st.DataObject
) -> None:
    body, expected, partial = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=12)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    events, decoder = decode(*chunks)
    assert events == expected
    assert decoder.had_partial == partial


@given(streams())
@settings(max_examples=150)
def test_one_byte_reads_yield_the_same_events(stream: tuple[bytes, list[SSEEvent], bool]) -> None:
    body, expected, partial = stream
    events, decoder = decode(*bytewise(body))
    assert events == expected
    assert decoder.had_partial == partial
