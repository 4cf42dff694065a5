"""A group may hold deployments of different providers: a fallback between OpenAI and
Anthropic works in both directions, streamed and not, on both drivers, and each attempt is
priced at its own provider's rate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from driver_clients import DRIVERS, AsyncClient, Client, SyncClient

from rakka_runtime.config.loader import load_config
from rakka_runtime.runtime import Runtime

DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused

FILES = {
    "deployments/claude.yaml": """# @package deployments.claude
provider: anthropic
model: claude-sonnet-4-5
embedded_emulator: true
api_key: null
""",
    "deployments/claude_dead.yaml": f"""# @package deployments.claude_dead
provider: anthropic
model: claude-sonnet-4-5
endpoint: {DEAD}
api_key: null
""",
    "deployments/openai_dead.yaml": f"""# @package deployments.openai_dead
provider: openai
model: gpt-4o-mini
variant: {{kind: direct, endpoint: "{DEAD}/v1"}}
api_key: null
""",
    "routing/mixed.yaml": """# @package _global_
model_groups:
  to-claude: {deployments: [openai_dead, claude], strategy: ordered}
  to-openai: {deployments: [claude_dead, local_a], strategy: ordered}
""",
}


@pytest.fixture(params=DRIVERS)
def mixed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    config = load_config(
        [
            "deployments=[local_a,claude,openai_dead,claude_dead]",
            "routing=mixed",
            "deployment.retry.max_retries=0",
        ],
        config_dir=str(tmp_path),
    )
    runtime = Runtime(config)
    client: Client = SyncClient(runtime) if request.param == "sync" else AsyncClient(runtime)
    yield client
    if isinstance(client, AsyncClient):
        client.close()
    runtime.close()


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
@pytest.mark.parametrize(
    ("group", "answered_by", "rates"),
    [
        ("to-claude", "claude", (3.00, 15.00)),  # claude-sonnet-4-5, per million tokens
        ("to-openai", "local_a", (0.15, 0.60)),  # gpt-4o-mini
    ],
)
def test_a_fallback_crosses_providers(
    mixed: Client, group: str, answered_by: str, rates: tuple[float, float], stream: bool
) -> None:
    result, deltas = mixed.run("hello across providers", model=group, stream=stream)
    assert result.text and result.deployment == answered_by
    if stream:
        assert "".join(deltas) == result.text
    tried = [(a.deployment, a.kind) for a in result.deployment_attempts]
    assert tried[0][1] == "network" and tried[-1] == (answered_by, "ok")
    usage = result.usage
    assert usage is not None
    expected = (usage.input_tokens * rates[0] + usage.output_tokens * rates[1]) / 1e6
    assert result.cost_usd == pytest.approx(expected)
