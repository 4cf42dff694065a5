"""Choosing the shared backend in config, and not paying for it when it is not chosen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rakka_runtime.config import load_config, validate_deployment_core
from rakka_runtime.errors import ConfigError


@pytest.mark.parametrize("policy", ["default", "batch"])
def test_both_policies_switch_to_redis_with_plain_overrides(policy: str) -> None:
    # Every key is in the policy files, so no Hydra '+' is needed.
    config = load_config(
        [
            f"policy={policy}",
            "deployment.rate_limits.backend=redis",
            "deployment.rate_limits.redis.url=redis://cache.internal:6380/2",
            "deployment.rate_limits.redis.on_backend_failure=reject",
            "deployment.circuit_breaker.backend=redis",
            "deployment.circuit_breaker.redis.key_prefix=team-a",
            "deployment.circuit_breaker.redis.state_cache=10ms",
        ]
    )
    deployment = validate_deployment_core(config.deployment)
    limits, breaker = deployment.rate_limits, deployment.circuit_breaker
    assert limits.backend == breaker.backend == "redis"
    assert limits.redis.url == "redis://cache.internal:6380/2"
    assert limits.redis.on_backend_failure == "reject"
    assert limits.redis.socket_timeout == 0.25 and limits.redis.retry_interval == 1.0
    assert breaker.redis.key_prefix == "team-a" and breaker.redis.state_cache == 0.01


def test_local_is_the_default() -> None:
    deployment = validate_deployment_core(load_config().deployment)
    assert deployment.rate_limits.backend == deployment.circuit_breaker.backend == "local"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "deployment.circuit_breaker.redis.state_cache=100ms",
            "deployment.circuit_breaker.redis.state_cache: '100ms' is invalid: "
            "input should be less than or equal to 0.05",
        ),
        ("deployment.rate_limits.backend=memcached", "is not one of local, redis"),
        ("deployment.rate_limits.redis.url=http://cache:6379", "should match pattern"),
        ("deployment.rate_limits.redis.socket_timeout=0s", "is not more than 0"),
    ],
)
def test_mistakes_name_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config([override])
    assert expected in str(info.value)


def test_the_local_backend_never_imports_redis() -> None:
    code = (
        "import sys\n"
        "from rakka_runtime.runtime import Runtime\n"
        "from rakka_runtime.config.loader import load_config\n"
        "with Runtime(load_config(['deployment.rate_limits.requests_per_minute=10'])) as rt:\n"
        "    rt.chat('hi')\n"
        "assert not [m for m in sys.modules if m == 'redis' or m.startswith('redis.')]\n"
        "assert 'rakka_runtime.policies.shared.redis_store' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
