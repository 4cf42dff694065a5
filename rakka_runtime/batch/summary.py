"""What a batch produced: counts by outcome, tokens, cost and latency percentiles.

The summary is fed output records — the ones a resumed run finds in the file as well as
the ones it writes — so it always describes the whole output file and its counts match
its lines. Percentiles come from a log-bucketed histogram (1 % wide buckets): constant
memory however many requests, at the price of ±0.5 % on each percentile.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections import Counter
from collections.abc import Mapping
from typing import Any

from rakka_runtime.batch.records import outcome

_RATIO = 1.01
_LOG_RATIO = math.log(_RATIO)
_FLOOR_MS = 0.01
_BUCKETS = 2400  # 0.01 ms .. ~2.6e8 ms (three days): every latency that can happen


class Histogram:
    """Counts of values in geometric buckets; :meth:`percentile` by nearest rank."""

    __slots__ = ("_buckets", "count", "max", "min")

    def __init__(self) -> None:
        self._buckets = array("Q", [0]) * _BUCKETS
        self.count = 0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        index = 0 if value <= _FLOOR_MS else int(math.log(value / _FLOOR_MS) / _LOG_RATIO) + 1
        self._buckets[min(index, _BUCKETS - 1)] += 1
        self.count += 1
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def percentile(self, p: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index, hits in enumerate(self._buckets):
            seen += hits
            if seen >= rank:
                if index == 0:
                    return self.min
                # The geometric middle of the bucket, kept within what was observed.
                middle: float = _FLOOR_MS * _RATIO ** (index - 0.5)
                return round(min(max(middle, self.min), self.max), 3)
        return self.max


class Summary:
    """Thread-safe accumulator of output records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records = 0
        self.resumed = 0  # records found in the output from earlier runs
        self.outcomes: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.reasoning_tokens = 0
        self.cost_usd = 0.0
        self.cost_unknown = 0
        self.attempts = 0
        self.latency_ms = Histogram()
        self.ttft_ms = Histogram()

    @property
    def errors(self) -> int:
        return self.records - self.outcomes["ok"]

    def add_resumed(self, record: Mapping[str, Any]) -> None:
        self.add(record)
        self.resumed += 1

    def add(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self.records += 1
            self.outcomes[outcome(record)] += 1
            usage = _usage(record)
            if usage is not None:
                self.prompt_tokens += _int(usage.get("prompt_tokens"))
                self.completion_tokens += _int(usage.get("completion_tokens"))
                self.cached_tokens += _int(
                    _details(usage, "prompt_tokens_details", "cached_tokens")
                )
                self.reasoning_tokens += _int(
                    _details(usage, "completion_tokens_details", "reasoning_tokens")
                )
            cost = record.get("cost_usd")
            if isinstance(cost, int | float):
                self.cost_usd += cost
            else:
                self.cost_unknown += 1
            self.attempts += _int(record.get("attempts"))
            latency = record.get("latency_ms")
            if isinstance(latency, int | float):
                self.latency_ms.add(latency)
            ttft = record.get("ttft_ms")
            if isinstance(ttft, int | float):
                self.ttft_ms.add(ttft)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "records": self.records,
                "resumed_records": self.resumed,
                "ok": self.outcomes["ok"],
                "errors": self.records - self.outcomes["ok"],
                "outcomes": dict(sorted(self.outcomes.items())),
                "tokens": {
                    "prompt": self.prompt_tokens,
                    "completion": self.completion_tokens,
                    "total": self.prompt_tokens + self.completion_tokens,
                    "cached": self.cached_tokens,
                    "reasoning": self.reasoning_tokens,
                },
                "cost_usd": round(self.cost_usd, 9),
                "cost_unknown_requests": self.cost_unknown,
                "attempts": self.attempts,
                "latency_ms": {f"p{p}": self.latency_ms.percentile(p) for p in (50, 95, 99)},
                "ttft_ms": {f"p{p}": self.ttft_ms.percentile(p) for p in (50, 95)},
            }

    def render(self) -> list[str]:
        """The summary as a few human-readable lines."""
        data = self.to_dict()
        errors = ", ".join(
            f"{kind} {count:,}" for kind, count in data["outcomes"].items() if kind != "ok"
        )
        resumed = f", {data['resumed_records']:,} from earlier runs" if self.resumed else ""
        head = f"{data['records']:,} records{resumed}: {data['ok']:,} ok, {data['errors']:,} errors"
        tokens = data["tokens"]
        cost = f"cost: ${data['cost_usd']:.6f}"
        if data["cost_unknown_requests"]:
            cost += f" + {data['cost_unknown_requests']:,} requests of unknown cost"
        return [
            head + (f" ({errors})" if errors else ""),
            f"tokens: {tokens['prompt']:,} prompt ({tokens['cached']:,} cached) · "
            f"{tokens['completion']:,} completion ({tokens['reasoning']:,} reasoning) · "
            f"{tokens['total']:,} total",
            cost,
            "latency ms: "
            + _percentiles(data["latency_ms"])
            + " · ttft ms: "
            + _percentiles(data["ttft_ms"]),
        ]


def _percentiles(values: Mapping[str, float | None]) -> str:
    return " ".join(f"{k} {'-' if v is None else f'{v:.1f}'}" for k, v in values.items())


def _usage(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    response = record.get("response")
    body = response.get("body") if isinstance(response, Mapping) else None
    usage = body.get("usage") if isinstance(body, Mapping) else None
    return usage if isinstance(usage, Mapping) else None


def _details(usage: Mapping[str, Any], key: str, field: str) -> object:
    details = usage.get(key)
    return details.get(field) if isinstance(details, Mapping) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
