"""Emulator responses checked against the published OpenAI and Azure OpenAI schemas.

The emulator stands in for both services in every other test, so a shape it invents would
let the client drift from the real wire unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from spec_schemas import AZURE, OPENAI, spec_validator

from rakka_provider_openai.emulator import Emulator

AZURE_PATH = "/openai/deployments/d/chat/completions?api-version=2024-10-21"
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
        },
    },
}
VARIANTS: list[dict[str, Any]] = [{}, {"tools": [TOOL]}, {"n": 2, "max_completion_tokens": 3}]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def fetch(emu: Emulator, path: str, extra: dict[str, Any], *, stream: bool) -> Any:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    response = urllib3.request("POST", emu.url + path, json=body)
    assert response.status == 200
    if not stream:
        return response.json()
    events = response.data.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    return [json.loads(e.removeprefix("data: ")) for e in events[:-2]]


@pytest.mark.parametrize("extra", VARIANTS)
def test_openai_shapes_match_the_spec_exactly(emu: Emulator, extra: dict[str, Any]) -> None:
    response = spec_validator(OPENAI, "CreateChatCompletionResponse")
    chunk = spec_validator(OPENAI, "CreateChatCompletionStreamResponse")

    response.assert_valid(fetch(emu, "/v1/chat/completions", extra, stream=False))
    for item in fetch(emu, "/v1/chat/completions", extra, stream=True):
        chunk.assert_valid(item)


@pytest.mark.parametrize("extra", VARIANTS)
def test_azure_shapes_validate(emu: Emulator, extra: dict[str, Any]) -> None:
    # Not strict: the service sends more than the 2024-10-21 spec declares (usage details,
    # per-chunk filter results), and so does the emulator.
    response = spec_validator(AZURE, "createChatCompletionResponse")
    chunk = spec_validator(AZURE, "createChatCompletionStreamResponse")

    response.assert_valid(fetch(emu, AZURE_PATH, extra, stream=False), strict=False)
    opening, *rest = fetch(emu, AZURE_PATH, extra, stream=True)
    for item in rest:
        chunk.assert_valid(item, strict=False)
    # Real Azure opens a stream with an empty-object chunk the spec does not allow; the
    # emulator copies the service, not the spec, so clients must tolerate it.
    assert chunk.errors(opening) == ["$.object: '' is not one of ['chat.completion.chunk']"]
