"""`rakka config show` never prints a password embedded in a URL (e.g. a shared Redis)."""

from __future__ import annotations

from rakka_runtime.config.loader import dump_config_yaml, load_config


def test_url_passwords_are_masked_in_the_dump() -> None:
    config = load_config(
        [
            "deployment.rate_limits.redis.url=redis://user:hunter2-canary@redis.internal:6379/0",
            "deployment.circuit_breaker.redis.url=rediss://:hunter2-canary@redis.internal:6380",
        ]
    )
    text = dump_config_yaml(config)
    assert "hunter2-canary" not in text
    assert "redis://user:**********@redis.internal:6379/0" in text
    assert "rediss://:**********@redis.internal:6380" in text
