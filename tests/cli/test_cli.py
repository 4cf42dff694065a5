"""The `rakka` command as a user runs it: a real subprocess, real emulator, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rakka_provider_openai.emulator import Emulator

RAKKA = str(Path(sys.executable).with_name("rakka"))
KEY = "sk-cli-canary-0123456789abcdef"


def rakka(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [RAKKA, *args], capture_output=True, text=True, timeout=60, env=full_env, check=False
    )


@pytest.fixture(scope="module")
def keyed_emulator() -> Iterator[Emulator]:
    with Emulator(keys=[KEY]) as emu:
        yield emu


def openai_args(emu: Emulator) -> list[str]:
    return ["deployment=openai", f"deployment.variant.endpoint={emu.url}/v1"]


def test_chat_streams_to_stdout_and_reports_usage_and_cost_on_stderr() -> None:
    out = rakka("chat", "hello")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 16
    assert "usage: " in out.stderr and "cost: $" in out.stderr and "attempts 1" in out.stderr


def test_chat_json_has_the_documented_shape() -> None:
    out = rakka("chat", "--json", "--max-tokens", "3", "hello")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {
        "text", "refusal", "logprobs", "finish_reason", "tool_calls", "usage", "cost_usd",
        "attempts", "latency_ms", "ttft_ms", "request_id", "error",
    }  # fmt: skip
    assert doc["refusal"] is None and doc["logprobs"] is None
    assert doc["error"] is None and doc["attempts"] == 1 and doc["finish_reason"] == "length"
    usage_keys = {"input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"}
    assert set(doc["usage"]) == usage_keys
    assert doc["usage"]["output_tokens"] == 3 and len(doc["text"].split()) == 3


@pytest.mark.parametrize("stream", [True, False])
def test_a_refusal_is_an_answer_not_an_error(stream: bool) -> None:
    with Emulator(keys=[KEY], scenario=[{"fault": "refusal"}]) as emu:
        args = ["chat", "--json", "--logprobs", "hi", *openai_args(emu)]
        out = rakka(*args, *([] if stream else ["--no-stream"]), env={"OPENAI_API_KEY": KEY})
        plain = rakka("chat", "hi", *openai_args(emu), env={"OPENAI_API_KEY": KEY})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["error"] is None and doc["text"] == "" and doc["finish_reason"] == "stop"
    assert doc["refusal"] == "I'm sorry, I can't help with that."
    assert doc["logprobs"]["content"] is None
    assert "".join(t["token"] for t in doc["logprobs"]["refusal"]) == doc["refusal"]
    assert plain.returncode == 0 and plain.stdout.strip() == doc["refusal"]
    assert "the model refused" in plain.stderr


def test_logprobs_flag_gives_one_entry_per_token() -> None:
    out = rakka("chat", "--json", "--logprobs", "--max-tokens", "4", "hello")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    tokens = doc["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == doc["text"] and len(tokens) == 4
    assert all(t["logprob"] <= 0 for t in tokens) and doc["logprobs"]["refusal"] is None


def test_no_stream_prints_the_same_text() -> None:
    streamed = rakka("chat", "same words")
    whole = rakka("chat", "--no-stream", "same words")
    assert whole.returncode == 0
    assert whole.stdout == streamed.stdout != ""


def test_chat_against_openai_shape_with_key_from_env(keyed_emulator: Emulator) -> None:
    out = rakka("chat", "--json", "hi", *openai_args(keyed_emulator), env={"OPENAI_API_KEY": KEY})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["text"]
    assert KEY not in out.stdout + out.stderr


def test_chat_against_azure_with_key_from_file(keyed_emulator: Emulator, tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(f"  {KEY}\n")
    out = rakka(
        "chat", "hi", "deployment=azure",
        f"deployment.variant.endpoint={keyed_emulator.url}",
        f"deployment.api_key.path={key_file}",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "[azure" in out.stderr


def test_failed_request_exits_1_with_one_error_line(keyed_emulator: Emulator) -> None:
    out = rakka("chat", "hi", *openai_args(keyed_emulator), env={"OPENAI_API_KEY": "sk-wrong"})
    assert out.returncode == 1
    assert out.stderr.startswith("error: unauthorized: ")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr and "sk-wrong" not in out.stderr


def test_failed_request_as_json(keyed_emulator: Emulator) -> None:
    out = rakka(
        "chat", "--json", "hi", *openai_args(keyed_emulator), env={"OPENAI_API_KEY": "sk-wrong"}
    )
    assert out.returncode == 1
    error = json.loads(out.stdout)["error"]
    assert error["kind"] == "unauthorized" and error["status"] == 401
    assert error["retryable"] is False


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("deployment.retry.jitter=sometimes", "deployment.retry.jitter: 'sometimes' is not one of"),
        ("deployment.timeouts.connect=5parsecs", "deployment.timeouts.connect: '5parsecs'"),
        (
            "deployment=nope",
            "'nope' is not a config option "
            "(available: anthropic, azure, local, local-anthropic, openai)",
        ),
        ("deployment.retry.max_retries=-1", "deployment.retry.max_retries"),
        ("deployment.provider=bedrock", "deployment.provider: 'bedrock' is not a registered"),
        ("deployment.variant.kind=mainframe", "deployment.variant"),
    ],
)
def test_bad_config_exits_2_naming_path_and_value(override: str, expected: str) -> None:
    out = rakka("chat", "hi", override)
    assert out.returncode == 2
    assert expected in out.stderr
    assert out.stderr.startswith("error: config: ")
    assert "Traceback" not in out.stderr


def test_missing_env_key_is_a_config_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    out = subprocess.run(
        [RAKKA, "chat", "hi", "deployment=openai"], capture_output=True, text=True, env=env,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "OPENAI_API_KEY" in out.stderr and "deployment.api_key" in out.stderr


def test_config_show_shows_references_never_values(tmp_path: Path) -> None:
    out = rakka(
        "config", "show", "deployment=openai", "~deployment.api_key",
        f"+deployment.api_key={{from: inline, value: {KEY}}}",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert KEY not in out.stdout + out.stderr
    assert "from: inline" in out.stdout
    out = rakka("config", "show", "deployment=azure", "env=prod")
    assert out.returncode == 0, out.stderr
    assert "path: /var/run/secrets/azure-openai/api-key" in out.stdout
    assert "name: prod" in out.stdout


def test_config_dir_overlays_builtin_conf(tmp_path: Path) -> None:
    (tmp_path / "deployment").mkdir()
    (tmp_path / "deployment" / "mine.yaml").write_text(
        "name: mine\nprovider: openai\nmodel: gpt-4.1-mini\nembedded_emulator: true\n"
        "variant: {kind: direct, endpoint: null}\napi_key: null\n"
        "base_model: null\norganization: null\nproject: null\n"
    )
    out = rakka("chat", "--json", "hi", "--config-dir", str(tmp_path), "deployment=mine")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    # gpt-4.1-mini prices apply: 0.40 in / 1.60 out per million tokens.
    usage = doc["usage"]
    expected = (usage["input_tokens"] * 0.40 + usage["output_tokens"] * 1.60) / 1e6
    assert doc["cost_usd"] == pytest.approx(expected)


def test_plugins_lists_plugins_hooks_and_kinds() -> None:
    out = rakka("plugins", "--json")
    assert out.returncode == 0
    doc = json.loads(out.stdout)
    # Ours are present (other installed provider plugins may add kinds of their own).
    assert (
        doc["providers"].items()
        >= {
            "anthropic": "anthropic",
            "azure": "openai",
            "openai": "openai",
        }.items()
    )
    openai = next(p for p in doc["plugins"] if p["name"] == "openai")
    assert "rakka_register_providers" in openai["hooks"]


def test_disabled_provider_plugin_leaves_no_provider() -> None:
    out = rakka("chat", "hi", env={"RAKKA_DISABLE_PLUGINS": "openai"})
    assert out.returncode == 2
    assert "deployment.provider: 'openai' is not a registered provider kind" in out.stderr
    assert "pip install rakka-provider-openai" in out.stderr
    assert "RAKKA_DISABLE_PLUGINS" in out.stderr


def test_unknown_provider_kind_says_how_to_get_one() -> None:
    out = rakka("chat", "hi", "deployment.provider=bedrock")
    assert out.returncode == 2
    assert "'bedrock' is not a registered provider kind (" in out.stderr
    assert "azure, openai" in out.stderr  # ours are listed (others may be installed too)
    assert "'rakka' entry-point group" in out.stderr and "rakka plugins" in out.stderr


def test_emulator_help_has_the_style_of_the_other_commands() -> None:
    out = rakka("emulator", "--help")
    assert out.returncode == 0
    assert out.stdout.startswith("Usage: rakka emulator [OPTIONS]")
    assert "\nOptions:\n" in out.stdout and "--port INTEGER RANGE" in out.stdout
    other = rakka("config", "compile", "--help")
    assert other.stdout.startswith("Usage: rakka config compile [OPTIONS]")


def test_help_is_fast_and_lists_commands() -> None:
    out = rakka("--help")
    assert out.returncode == 0
    for command in ("chat", "config", "plugins", "emulator"):
        assert command in out.stdout


def test_help_loads_no_policy_and_no_builtin_plugin_adds_a_command() -> None:
    """`rakka --help` lists the commands without importing the policies, the config schema
    or the provider interface (together half its time): the built-in plugins are policies
    and add no command, and the provider plugins import those inside their hooks."""
    from rakka_runtime.plugins import BUILTIN_PLUGINS, make_plugin_manager

    pm = make_plugin_manager(disabled=())
    adding = {impl.plugin_name for impl in pm.hook.rakka_register_commands.get_hookimpls()}
    assert adding and not adding & set(BUILTIN_PLUGINS)
    heavy = ("rakka_runtime.policies", "rakka_runtime.config", "rakka_runtime.provider")
    probe = (
        f"import sys; from rakka_runtime.cli import main; HEAVY = {heavy!r}\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(HEAVY)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert "emulator" in out.stdout and out.stdout.strip().endswith("[]")


def test_config_compile_then_chat_from_the_compiled_file(
    keyed_emulator: Emulator, tmp_path: Path
) -> None:
    out = tmp_path / "rakka.json"
    args = [*openai_args(keyed_emulator), "deployment.api_key.name=RAKKA_CLI_KEY"]
    done = rakka("config", "compile", *args, "-o", str(out))
    assert done.returncode == 0, done.stderr
    # Success says what was written (on stderr: stdout is for `-o -`).
    assert done.stdout == ""
    assert done.stderr.startswith(f"wrote {out}: deployment openai (openai · gpt-4o-mini)")
    assert "digest sha256:" in done.stderr
    compiled = json.loads(out.read_text())
    assert compiled["format"] == "rakka-compiled-config/1"
    assert compiled["config"]["deployment"]["api_key"] == {"from": "env", "name": "RAKKA_CLI_KEY"}
    assert KEY not in out.read_text()
    chat = rakka("chat", "--compiled", str(out), "--no-stream", "hi", env={"RAKKA_CLI_KEY": KEY})
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip()
    assert "[openai · gpt-4o-mini]" in chat.stderr


def test_compiled_takes_no_overrides_and_bad_config_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "rakka.json"
    assert rakka("config", "compile", "-o", str(out)).returncode == 0
    mixed = rakka("chat", "--compiled", str(out), "hi", "deployment.model=x")
    assert mixed.returncode == 2
    assert mixed.stderr == "error: --compiled takes no overrides or --config-dir: compile them in\n"
    bad = rakka("config", "compile", "deployment.retry.jitter=x")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: config: deployment.retry.jitter: 'x' is not one of")
    assert "Traceback" not in bad.stderr
