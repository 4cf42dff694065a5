"""provider.decode_json: orjson's speed, the standard library's reading of every document.

Every body and stream event goes through it; whatever orjson refuses that the standard
library accepts must still read as it always did, and a malformed document must still
raise ``ValueError`` (which the codecs turn into ``protocol``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rakka_runtime import provider
from rakka_runtime.errors import ProtocolError
from rakka_runtime.provider import decode_json, encode_json, json_object

_INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_VALUES = st.recursive(
    st.none() | st.booleans() | _INT64 | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    # NaN is not equal to itself: compare what the values serialise to.
    return json.dumps(a) == json.dumps(b) and type(a) is type(b)


@pytest.fixture(params=["orjson", "standard library only"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param != "orjson":
        monkeypatch.setattr(provider, "_fast_loads", None)  # a platform without orjson
    else:
        assert provider._fast_loads is not None, "orjson is a dependency: it must be there"
    return str(request.param)


@settings(max_examples=300, deadline=None)
@given(value=_VALUES, ensure_ascii=st.booleans())
def test_a_document_reads_as_the_standard_library_reads_it(value: Any, ensure_ascii: bool) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    for data in (text, text.encode("utf-8", "surrogatepass")):
        try:
            expected = json.loads(data)
        except ValueError:  # a lone surrogate as raw UTF-8 bytes: not UTF-8
            with pytest.raises(ValueError):
                decode_json(data)
            continue
        assert _same(decode_json(data), expected)


@pytest.mark.parametrize(
    "data",
    [
        b"NaN",
        b"[Infinity, -Infinity]",
        b'"\\ud800"',  # a lone surrogate escape
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        b"1e400",  # past a double's range: inf
        '{"a": "é"}'.encode("utf-16"),  # not UTF-8: sniffed, as json.loads does
        b'{"a": 1, "a": 2}',
        "  [1, 2.5, null]  ",
    ],
)
def test_what_orjson_refuses_reads_as_before(decoder: str, data: str | bytes) -> None:
    assert _same(decode_json(data), json.loads(data))


@pytest.mark.parametrize("data", [b"", b"{", b'{"a": 1} x', b'{"a": "\xff"}'])
def test_a_malformed_document_raises_value_error(decoder: str, data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_json(data)


def test_nesting_too_deep_fails_as_the_standard_library_does(decoder: str) -> None:
    # orjson stops at 1,024 levels; the standard library then runs out of stack, as it
    # did before orjson (the codecs report that as the provider's codec failing).
    with pytest.raises(RecursionError):
        decode_json(b"[" * 5000)


def test_a_body_that_is_not_an_object_is_protocol(decoder: str) -> None:
    with pytest.raises(ProtocolError, match="not a JSON object"):
        json_object(b"[1]", 200)
    with pytest.raises(ProtocolError, match="not JSON"):
        json_object(b"<html>", 502)
    assert json_object(b'{"ok": true}', 200) == {"ok": True}


# -- request bodies -------------------------------------------------------------------------

_BODIES = st.recursive(
    st.none()
    | st.booleans()
    | _INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(params=["orjson", "standard library only"])
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param != "orjson":
        monkeypatch.setattr(provider, "_fast_dumps", None)
    else:
        assert provider._fast_dumps is not None
    return str(request.param)


@settings(max_examples=300, deadline=None)
@given(value=_BODIES)
def test_a_body_means_what_the_standard_library_would_send(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    sent = encode_json(value)
    assert json.loads(sent) == json.loads(expected)


@pytest.mark.parametrize(
    "value",
    [
        {"temperature": float("nan")},
        {"logit_bias": {"50256": float("inf")}},
        [float("-inf")],
    ],
)
def test_nan_and_infinities_are_refused_not_sent_as_null(encoder: str, value: Any) -> None:
    with pytest.raises(ValueError):
        encode_json(value)


def test_what_orjson_refuses_is_written_as_before(encoder: str) -> None:
    assert json.loads(encode_json({1: "a"})) == {"1": "a"}  # a key that is not a string
    assert json.loads(encode_json([2**70])) == [2**70]  # past 64 bits
    assert json.loads(encode_json({"content": None, "n": 1})) == {"content": None, "n": 1}
    with pytest.raises(ValueError):  # a lone surrogate is not Unicode: not sent
        encode_json({"content": "\ud800"})
    with pytest.raises(TypeError):
        encode_json({"a": object()})


def test_mappings_and_sequences_of_other_types_are_written(encoder: str) -> None:
    from types import MappingProxyType

    value = {"messages": (MappingProxyType({"role": "user", "content": "hé"}),)}
    assert json.loads(encode_json(value)) == {"messages": [{"role": "user", "content": "hé"}]}
