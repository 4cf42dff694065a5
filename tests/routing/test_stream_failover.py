"""Stream failover: a primary cut, stalled or sending a malformed chunk after 40 of 60
words. With ``continue`` the caller gets the 60 words exactly once; with ``fail`` a
``stream_interrupted`` carrying the 40-word partial. The fallback gets one request."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from driver_clients import Client

from rakka_provider_openai.emulator import Emulator
from rakka_provider_openai.emulator.content import completion_pieces, prompt_seed
from rakka_runtime.types import ChatResult
from rakka_testing import EMULATOR_KEY

WORDS = 60
CUT_AT = 40
PROMPT = "tell me a long story"

FAULTS = {
    # The role chunk comes first, then one event per word.
    "cut": f"cut;after={CUT_AT + 1}",
    "stall": f"stall_mid;after={CUT_AT + 1};seconds=3",
    "malformed": f"malformed;after={CUT_AT}",
}


@pytest.fixture(scope="module")
def whole() -> str:
    """The emulator's whole answer to PROMPT (its content depends on the prompt only)."""
    return "".join(completion_pieces(prompt_seed([{"role": "user", "content": PROMPT}]), WORDS))


def _client(
    routed_at: Callable[..., Client], primary: Emulator, fallback: Emulator, mode: str
) -> Client:
    return routed_at(
        {"primary": primary.url, "fallback": fallback.url},
        {"g": {"deployments": ["primary", "fallback"], "stream_failover": mode}},
        settings={"primary": {"timeouts": {"read_timeout": "300ms"}}},
    )


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_continue_gives_every_word_once(
    routed_at: Callable[..., Client], fault: str, whole: str
) -> None:
    assert len(whole.split()) == WORDS
    rule = {"fault": FAULTS[fault]}
    with (
        Emulator(keys=[EMULATOR_KEY], scenario=[rule]) as primary,
        Emulator(keys=[EMULATOR_KEY]) as fallback,
    ):
        client = _client(routed_at, primary, fallback, "continue")
        result, deltas = client.run(PROMPT, model="g", max_tokens=WORDS)
        assert "".join(deltas) == whole
        assert result.text == whole
        assert fallback.stats.requests == 1
        tried = result.deployment_attempts
        assert [(a.deployment, a.continued) for a in tried] == [
            ("primary", False),
            ("fallback", True),
        ]
        assert tried[0].kind != "ok"
        costs = [a.cost_usd for a in tried if a.cost_usd is not None]
        assert result.cost_usd == pytest.approx(sum(costs))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fail_surfaces_the_partial(
    routed_at: Callable[..., Client], fault: str, whole: str
) -> None:
    rule = {"fault": FAULTS[fault]}
    with (
        Emulator(keys=[EMULATOR_KEY], scenario=[rule]) as primary,
        Emulator(keys=[EMULATOR_KEY]) as fallback,
    ):
        client = _client(routed_at, primary, fallback, "fail")
        error = client.failure(PROMPT, model="g", max_tokens=WORDS)
        assert error.kind == "stream_interrupted"
        assert isinstance(error.partial, ChatResult)
        assert error.partial.text == " ".join(whole.split()[:CUT_AT])
        assert fallback.stats.requests == 0
        assert [a.deployment for a in error.deployment_attempts] == ["primary"]


def test_the_emulator_continues_an_unfinished_turn(
    client_at: Callable[..., Client], whole: str
) -> None:
    with Emulator(keys=[EMULATOR_KEY]) as emu:
        client = client_at(emu.url)
        partial = " ".join(whole.split()[:CUT_AT])
        messages = [
            {"role": "user", "content": PROMPT},
            {"role": "assistant", "content": partial},
        ]
        complete, _ = client.run(PROMPT, max_tokens=WORDS)
        assert complete.text == whole
        result, deltas = client.run(messages, max_tokens=WORDS)  # type: ignore[arg-type]
        assert partial + "".join(deltas) == whole
        assert result.usage is not None and result.usage.output_tokens == WORDS - CUT_AT


def test_a_content_filter_mid_stream_is_not_continued(routed_at: Callable[..., Client]) -> None:
    rule = {"fault": "content_filter_finish"}
    with (
        Emulator(keys=[EMULATOR_KEY], scenario=[rule]) as primary,
        Emulator(keys=[EMULATOR_KEY]) as fallback,
    ):
        client = _client(routed_at, primary, fallback, "continue")
        error = client.failure(PROMPT, model="g", max_tokens=WORDS)
        assert error.kind == "content_filtered"
        assert error.partial is not None and len(error.partial.text.split()) == WORDS // 2
        assert fallback.stats.requests == 0
