"""Thread-safe counters the tests and benchmarks read back."""

from __future__ import annotations

import threading


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._connections = 0
        self._faults: dict[str, int] = {}

    @property
    def requests(self) -> int:
        """HTTP requests parsed, whatever their route or outcome."""
        return self._requests

    @property
    def connections_accepted(self) -> int:
        return self._connections

    @property
    def faults_injected(self) -> dict[str, int]:
        """A copy: fault name -> times it fired."""
        with self._lock:
            return dict(self._faults)

    def count_request(self) -> None:
        with self._lock:
            self._requests += 1

    def count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def count_fault(self, name: str) -> None:
        with self._lock:
            self._faults[name] = self._faults.get(name, 0) + 1

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._connections = 0
            self._faults.clear()

    def __repr__(self) -> str:
        return (
            f"Stats(requests={self._requests}, connections_accepted={self._connections},"
            f" faults_injected={self.faults_injected})"
        )
