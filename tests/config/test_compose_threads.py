from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rakka_runtime.config import compose_config, load_config

DEPLOYMENTS = ("local", "openai", "azure")


def _compose(i: int) -> tuple[int, str, int]:
    name = DEPLOYMENTS[i % len(DEPLOYMENTS)]
    raw = compose_config([f"deployment={name}", f"deployment.retry.max_retries={i}"])
    return i, raw["deployment"]["name"], raw["deployment"]["retry"]["max_retries"]


def test_repeated_compose_from_many_threads() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(_compose, range(40)))
    for i, name, retries in results:
        assert name == DEPLOYMENTS[i % len(DEPLOYMENTS)]
        assert retries == i


def test_repeated_calls_are_independent() -> None:
    first = load_config(["env=prod"])
    second = load_config()
    third = load_config(["env=prod"])
    assert first.env.name == "prod"
    assert second.env.name == "dev"
    assert first == third


def test_an_application_hydra_state_is_restored(tmp_path: Path) -> None:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    (tmp_path / "app.yaml").write_text("x: 1\n", encoding="utf-8")
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        outer = GlobalHydra.instance().hydra
        assert outer is not None
        assert compose_config()["env"]["name"] == "dev"
        assert GlobalHydra.instance().hydra is outer
    assert not GlobalHydra.instance().is_initialized()


def test_importing_config_does_not_import_hydra() -> None:
    code = (
        "import sys, rakka_runtime.config, rakka_runtime.secrets; "
        "bad = [m for m in ('hydra', 'omegaconf', 'yaml') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
