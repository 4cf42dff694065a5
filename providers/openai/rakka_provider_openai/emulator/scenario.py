"""Scenarios: faults chosen by request number or a seeded coin, for load and soak tests.

A scenario is ``{"rules": [...], "seed": 1}`` (or just the list of rules, or a path to a YAML
or JSON file holding either). Each rule names a ``fault`` spec and any of ``every`` (every
N-th request), ``probability`` (a seeded draw) and ``requests`` (1-based request numbers);
a rule with several selectors needs all of them, one with none matches every request. The
first matching rule wins.

Requests are numbered in arrival order among authenticated chat-completion requests, from 1
when the scenario is installed. Every probability rule draws on every request, matched or
not, so the outcome for request N depends only on the seed and N.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from .faults import Fault, parse_fault

ScenarioSource: TypeAlias = Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | os.PathLike[str]

_RULE_KEYS = frozenset({"fault", "every", "probability", "requests"})


@dataclass(frozen=True, slots=True)
class Rule:
    fault: Fault
    every: int | None = None
    probability: float | None = None
    requests: frozenset[int] | None = None


class Scenario:
    def __init__(self, rules: Sequence[Rule], seed: int | str | None = 0) -> None:
        self.rules = tuple(rules)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._seen = 0

    @property
    def requests_seen(self) -> int:
        return self._seen

    def next_fault(self) -> Fault | None:
        """Number the next request and return the fault it gets, if any."""
        with self._lock:
            self._seen += 1
            number = self._seen
            draws = [self._rng.random() if r.probability is not None else 0.0 for r in self.rules]
        for rule, draw in zip(self.rules, draws, strict=True):
            if rule.every is not None and number % rule.every:
                continue
            if rule.requests is not None and number not in rule.requests:
                continue
            if rule.probability is not None and draw >= rule.probability:
                continue
            return rule.fault
        return None


def load_scenario(source: ScenarioSource | None) -> Scenario | None:
    """Build a scenario from a mapping, a list of rules or a file path; ``ValueError`` if bad."""
    if source is None:
        return None
    if isinstance(source, str | os.PathLike):
        source = _read_file(Path(source))
    if isinstance(source, Mapping):
        unknown = set(source) - {"rules", "seed"}
        if unknown:
            raise ValueError(f"unknown scenario keys: {sorted(unknown)}")
        rules_data = source.get("rules", [])
        seed = source.get("seed", 0)
    else:
        rules_data, seed = source, 0
    if not isinstance(rules_data, Sequence) or isinstance(rules_data, str):
        raise ValueError("scenario 'rules' must be a list")
    return Scenario([_rule(item, i) for i, item in enumerate(rules_data)], seed)


def _read_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    import yaml  # only scenario files need PyYAML; keep it off the import path otherwise

    return yaml.safe_load(text)


def _rule(item: Any, index: int) -> Rule:
    where = f"scenario rule {index}"
    if not isinstance(item, Mapping) or "fault" not in item:
        raise ValueError(f"{where}: expected a mapping with a 'fault' key")
    unknown = set(item) - _RULE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    every = item.get("every")
    if every is not None and (not isinstance(every, int) or every < 1):
        raise ValueError(f"{where}: 'every' must be a positive integer")
    probability = item.get("probability")
    if probability is not None:
        if not isinstance(probability, int | float) or not 0 <= probability <= 1:
            raise ValueError(f"{where}: 'probability' must be within 0..1")
        probability = float(probability)
    requests = item.get("requests")
    if requests is not None:
        if not isinstance(requests, Sequence) or not all(
            isinstance(n, int) and n >= 1 for n in requests
        ):
            raise ValueError(f"{where}: 'requests' must be a list of 1-based request numbers")
        requests = frozenset(requests)
    try:
        fault = parse_fault(str(item["fault"]))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return Rule(fault, every, probability, requests)
