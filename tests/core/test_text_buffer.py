"""TextBuffer gives back exactly what was appended, in order, however many fragments."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rakka_runtime.text_buffer import TextBuffer


@given(st.lists(st.text(max_size=5), max_size=300))
def test_the_text_is_the_fragments_joined_in_order(fragments: list[str]) -> None:
    buffer = TextBuffer()
    for fragment in fragments:
        buffer.append(fragment)
    assert buffer.text() == "".join(fragments)
    assert bool(buffer) == bool(fragments)


def test_an_open_stream_holds_few_objects() -> None:
    buffer = TextBuffer()
    for i in range(1000):
        buffer.append(f"w{i} ")
    # 1,000 fragments are held as 15 joined groups plus a short tail, not 1,000 strings.
    assert len(buffer._groups) == 15 and len(buffer._tail) == 1000 - 15 * 64
