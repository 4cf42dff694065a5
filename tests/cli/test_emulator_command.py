"""`rakka emulator` as a server process, driven by the official openai SDK."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

RAKKA = str(Path(sys.executable).with_name("rakka"))
KEY = "sk-served-emulator"


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    proc = subprocess.Popen(
        [RAKKA, "emulator", "--port", "0", "--key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert match, line
    yield match.group(0)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_sdk_non_streamed_and_streamed_agree(served: str) -> None:
    client = openai.OpenAI(base_url=served + "/v1", api_key=KEY, max_retries=0)
    whole = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "sdk"}]
    )
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "sdk"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_sdk_azure_client(served: str) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=served, api_key=KEY, api_version="2024-10-21", max_retries=0
    )
    reply = client.chat.completions.create(
        model="my-deployment", messages=[{"role": "user", "content": "azure"}]
    )
    assert reply.choices[0].message.content
    streamed = client.chat.completions.create(
        model="my-deployment", messages=[{"role": "user", "content": "azure"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
