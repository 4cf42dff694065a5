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
    # The user's policy file replaces the built-in one whole: what it leaves out is the
    # schema's default (initial_backoff 1s), not the built-in file's value.
    retry = compose_config(config_dir=tmp_path)["deployment"]["retry"]
    assert (retry["max_retries"], retry["jitter"], retry["initial_backoff"]) == (9, "full", 1.0)
    # A deployment file's own policy keys win over the policy group.
    retry = compose_config(["deployment=mine"], config_dir=tmp_path)["deployment"]["retry"]
    assert (retry["max_retries"], retry["jitter"]) == (1, "full")


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


# --- Schema defaults under every deployment (a user file spells only what it changes) ----

SUMMARIZER = """\
    name: summarizer
    provider: openai
    model: gpt-4o-mini
    variant: {kind: direct, endpoint: "https://proxy.example/v1"}
    """


@pytest.mark.parametrize(
    ("override", "path", "value"),
    [
        ("deployment.secret_watch.enabled=false", ("secret_watch", "enabled"), False),
        ("deployment.base_model=gpt-4o", ("base_model",), "gpt-4o"),
        ("deployment.budget.max_spend_per_day_usd=5", ("budget", "max_spend_per_day_usd"), 5),
        ("deployment.embedded_emulator=false", ("embedded_emulator",), False),
        ("deployment.name=renamed", ("name",), "renamed"),
        # A provider's own fields are defaulted too, once the provider is known.
        ("deployment.organization=org-1", ("organization",), "org-1"),
        ("deployment.max_tokens_param=max_tokens", ("max_tokens_param",), "max_tokens"),
    ],
)
def test_every_defaulted_field_is_overridable_on_a_minimal_deployment_file(
    tmp_path: Path, override: str, path: tuple[str, ...], value: object
) -> None:
    _write(tmp_path, "deployment/summarizer.yaml", SUMMARIZER)
    config = load_config(["deployment=summarizer", override], config_dir=tmp_path)
    node: object = config.deployment
    for key in path:
        assert isinstance(node, dict)
        node = node[key]
    assert node == value


def test_a_minimal_deployment_file_validates_with_its_provider(tmp_path: Path) -> None:
    from rakka_provider_openai.deployment import OpenAIDeployment
    from rakka_runtime.config.validation import validate_deployment

    _write(tmp_path, "deployment/summarizer.yaml", SUMMARIZER)
    raw = compose_config(
        ["deployment=summarizer", "deployment.secret_watch.enabled=false"], config_dir=tmp_path
    )
    deployment = validate_deployment(raw["deployment"], OpenAIDeployment)
    assert deployment.secret_watch.enabled is False and deployment.retry.max_retries == 3


def test_an_unknown_key_blames_its_own_override_not_the_deployment_choice(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "deployment/summarizer.yaml", SUMMARIZER)
    with pytest.raises(ConfigError) as info:
        compose_config(
            ["deployment=summarizer", "deployment.secret_wach.enabled=false"], config_dir=tmp_path
        )
    assert "'deployment.secret_wach.enabled=false'" in str(info.value)
    assert "deployment=summarizer" not in str(info.value)


# --- Env files need only what they change; a same-named one extends the built-in ---------


def test_user_env_file_needs_only_what_it_changes(tmp_path: Path) -> None:
    # The README's pricing example, as a user's own env file: no env.name needed.
    _write(
        tmp_path,
        "env/cheap.yaml",
        """\
        # @package _global_
        pricing:
          models:
            gpt-4o: {output: 9.0}
            my-finetune: {input: 3.0, output: 12.0}
        """,
    )
    config = load_config(["env=cheap"], config_dir=tmp_path)
    assert config.env.name == "cheap"
    assert config.pricing.models["gpt-4o"].output == 9.0
    assert config.pricing.models["gpt-4o"].input == 2.5  # the rest stays published


def test_user_env_named_like_a_builtin_one_extends_it(tmp_path: Path) -> None:
    builtin = load_config(["env=prod"])
    _write(
        tmp_path,
        "env/prod.yaml",
        """\
        # @package _global_
        deployment:
          timeouts:
            deadline: 5m
        """,
    )
    config = load_config(["env=prod"], config_dir=tmp_path)
    assert config.env.name == "prod"
    deployment = config.deployment
    assert isinstance(deployment, dict) and isinstance(builtin.deployment, dict)
    assert deployment["timeouts"]["deadline"] == "5m"
    # The built-in prod's limits and negotiated price are still there.
    assert deployment["rate_limits"] == builtin.deployment["rate_limits"]
    assert config.pricing.models["gpt-4o-mini"] == builtin.pricing.models["gpt-4o-mini"]
    assert config.pricing.models["gpt-4o-mini"].source == "negotiated"


def test_a_new_env_can_extend_a_builtin_one_through_its_defaults(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "env/staging.yaml",
        """\
        # @package _global_
        defaults:
          - prod
          - _self_
        env:
          name: staging
        deployment:
          rate_limits:
            requests_per_minute: 100
        """,
    )
    config = load_config(["env=staging"], config_dir=tmp_path)
    assert config.env.name == "staging"
    assert isinstance(config.deployment, dict)
    assert config.deployment["rate_limits"]["requests_per_minute"] == 100
    assert config.deployment["rate_limits"]["concurrent_requests"] == 64  # from prod
    assert config.pricing.models["gpt-4o-mini"].source == "negotiated"


def test_an_env_extension_does_not_leak_into_another_config_dir(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _write(first, "env/prod.yaml", "# @package _global_\ndeployment: {name: from-first}\n")
    _write(second, "env/dev.yaml", "# @package _global_\nenv: {name: dev}\n")
    assert compose_config(["env=prod"], config_dir=first)["deployment"]["name"] == "from-first"
    # `second` shadows only dev: its prod is the built-in one, untouched by `first`.
    assert compose_config(["env=prod"], config_dir=second)["deployment"]["name"] == "local"
