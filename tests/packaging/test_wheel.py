"""The built wheel carries the built-in conf/ and works from another folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if build.returncode != 0:
        pytest.fail(f"pip wheel failed: {build.stderr[-2000:]}")
    [built] = out.glob("rakka_runtime-*.whl")
    return built


@pytest.fixture(scope="module")
def provider_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("provider-wheel")
    source = ROOT / "providers" / "openai"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if build.returncode != 0:
        pytest.fail(f"pip wheel failed: {build.stderr[-2000:]}")
    [built] = out.glob("rakka_provider_openai-*.whl")
    return built


def test_both_wheels_ship_py_typed(wheel: Path, provider_wheel: Path) -> None:
    # PEP 561: without the marker a user's type checker treats our packages as untyped.
    assert "rakka_runtime/py.typed" in zipfile.ZipFile(wheel).namelist()
    assert "rakka_provider_openai/py.typed" in zipfile.ZipFile(provider_wheel).namelist()


def test_wheel_contains_the_conf_tree(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for conf_file in (ROOT / "conf").rglob("*.yaml"):
        relative = conf_file.relative_to(ROOT).as_posix()
        assert f"rakka_runtime/{relative}" in names, relative


def test_wheel_contains_the_lua_scripts(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    scripts = list((ROOT / "rakka_runtime/policies/shared/lua").glob("*.lua"))
    assert scripts
    for script in scripts:
        assert script.relative_to(ROOT).as_posix() in names, script.name


def test_unpacked_wheel_composes_config_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "from rakka_runtime.config.loader import builtin_conf_dir, load_config;"
        "print(builtin_conf_dir());"
        "print(load_config(['env=prod']).env.name)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    conf_dir, env_name = out.stdout.split()
    assert Path(conf_dir).is_relative_to(site)
    assert env_name == "prod"


def test_pricing_footer_names_the_installed_table_not_a_repository_path(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = "from rakka_runtime.cli import main; main(['pricing'])"
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    footer = next(line for line in out.stdout.splitlines() if line.startswith("* differs"))
    published = site / "rakka_runtime" / "conf" / "pricing" / "published.yaml"
    assert footer == f"* differs from the published table ({published})"
