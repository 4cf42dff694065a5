"""A user config dir overlays the built-in tree (see rakka_runtime.config.loader)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rakka_runtime.config import builtin_conf_dir, compose_config, load_config
from rakka_runtime.errors import ConfigError


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_new_option_is_added_next_to_builtin_ones(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "deployment/mine.yaml",
        """\
        name: mine
        provider: openai
        model: gpt-4.1
        api_key: {from: env, name: MY_KEY}
        """,
    )
    raw = compose_config(["deployment=mine"], config_dir=tmp_path)
    assert raw["deployment"]["name"] == "mine"
    assert raw["deployment"]["model"] == "gpt-4.1"
    # The policy group still fills in the policies.
    assert raw["deployment"]["retry"]["max_retries"] == 3
    # Built-in options stay available.
    assert compose_config(["deployment=azure"], config_dir=tmp_path)["deployment"]["name"] == (
        "azure"
    )


def test_unknown_option_lists_user_and_builtin_options(tmp_path: Path) -> None:
    _write(tmp_path, "deployment/mine.yaml", "name: mine\nprovider: openai\nmodel: x\n")
    with pytest.raises(ConfigError) as info:
        compose_config(["deployment=nope"], config_dir=tmp_path)
    assert str(info.value) == (
        "deployment: 'nope' is not a config option "
        "(available: anthropic, azure, local, local-anthropic, mine, openai)"
    )


def test_user_file_replaces_builtin_file_of_same_name(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "deployment/local.yaml",
        """\
        name: my-local
        provider: openai
        model: gpt-4.1-nano
        embedded_emulator: true
        """,
    )
    deployment = compose_config(config_dir=tmp_path)["deployment"]
    assert deployment["name"] == "my-local"
    assert deployment["model"] == "gpt-4.1-nano"
    # Replaced whole, not merged: the built-in file's variant is gone.
    assert "variant" not in deployment


def test_user_policy_file_replaces_builtin_and_deployment_keys_win(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "policy/default.yaml",
        """\
        # @package deployment
        retry:
          max_retries: 9
          jitter: full
        """,
    )
    _write(
        tmp_path,
        "deployment/mine.yaml",
        """\
        name: mine
        provider: openai
        model: gpt-4o
        retry:
          max_retries: 1
        """,
    )
    assert compose_config(config_dir=tmp_path)["deployment"]["retry"] == {
        "max_retries": 9,
        "jitter": "full",
    }
    # A deployment file's own policy keys win over the policy group.
    retry = compose_config(["deployment=mine"], config_dir=tmp_path)["deployment"]["retry"]
    assert retry == {"max_retries": 1, "jitter": "full"}


def test_user_primary_config_replaces_the_defaults(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "config.yaml",
        """\
        defaults:
          - policy: batch
          - deployment: openai
          - pricing: published
          - env: prod
          - _self_
        """,
    )
    config = load_config(config_dir=tmp_path)
    assert config.env.name == "prod"
    assert config.deployment["name"] == "openai"
    assert config.deployment["retry"]["max_retries"] == 8
    # Command-line overrides still choose other options.
    assert load_config(["env=dev"], config_dir=tmp_path).env.name == "dev"


def test_user_env_file_can_add_an_environment(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "env/staging.yaml",
        """\
        # @package _global_
        env:
          name: staging
        pricing:
          models:
            my-finetune: {input: 3.0, output: 12.0}
        """,
    )
    config = load_config(["env=staging"], config_dir=tmp_path)
    assert config.env.name == "staging"
    assert config.pricing.models["my-finetune"].output == 12.0
    assert "gpt-4o" in config.pricing.models


def test_missing_package_header_gets_a_hint(tmp_path: Path) -> None:
    _write(tmp_path, "policy/mine.yaml", "retry:\n  max_retries: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(["policy=mine"], config_dir=tmp_path)
    assert info.value.path == "policy"
    assert "# @package deployment" in str(info.value)


def test_empty_user_dir_changes_nothing(tmp_path: Path) -> None:
    assert compose_config(config_dir=tmp_path) == compose_config()
    assert compose_config(config_dir=builtin_conf_dir()) == compose_config()


def test_relative_config_dir_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "user/deployment/mine.yaml", "name: mine\nprovider: openai\nmodel: x\n")
    monkeypatch.chdir(tmp_path)
    assert compose_config(["deployment=mine"], config_dir="user")["deployment"]["name"] == "mine"


def test_path_with_spaces_and_quotes(tmp_path: Path) -> None:
    user = tmp_path / "it's a dir"
    _write(user, "deployment/mine.yaml", "name: mine\nprovider: openai\nmodel: x\n")
    assert compose_config(["deployment=mine"], config_dir=user)["deployment"]["name"] == "mine"


def test_missing_config_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        compose_config(config_dir=tmp_path / "absent")
    assert info.value.path == "config_dir"
    assert "absent" in str(info.value)


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path, "deployment/broken.yaml", "name: broken\nprovider: [openai\n")
    with pytest.raises(ConfigError) as info:
        compose_config(["deployment=broken"], config_dir=tmp_path)
    assert info.value.path.endswith("broken.yaml")
    assert "invalid YAML at line" in str(info.value)
    assert "\n" not in str(info.value)


def test_non_mapping_file(tmp_path: Path) -> None:
    _write(tmp_path, "deployment/listy.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError) as info:
        compose_config(["deployment=listy"], config_dir=tmp_path)
    assert info.value.path == "deployment/listy"
    assert "ListConfig" in info.value.message
