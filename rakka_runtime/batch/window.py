"""The read-ahead window: a bounded priority queue between the reader and the workers.

Its capacity bounds how far the reader runs ahead of the requests being sent, so memory
stays flat however long the input is: when the window is full the reader blocks. Within
the window the highest priority goes first, and first come first served within one.
"""

from __future__ import annotations

import heapq
import itertools
import threading

from rakka_runtime.batch.input import BatchItem


class Window:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the read-ahead window needs a capacity of at least 1")
        self.capacity = capacity
        self._heap: list[tuple[int, int, BatchItem]] = []
        self._arrival = itertools.count()
        lock = threading.Lock()
        self._not_full = threading.Condition(lock)
        self._not_empty = threading.Condition(lock)
        self._finished = False  # the reader has put its last item
        self._closed = False  # stopping: nothing more is handed out

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, item: BatchItem) -> bool:
        """Queue ``item``, blocking while the window is full; False once it is closed."""
        with self._not_full:
            while len(self._heap) >= self.capacity and not self._closed:
                self._not_full.wait()
            if self._closed:
                return False
            heapq.heappush(self._heap, (-item.priority, next(self._arrival), item))
            self._not_empty.notify()
            return True

    def get(self) -> BatchItem | None:
        """The next item to send; ``None`` when the input is exhausted or the window closed."""
        with self._not_empty:
            while not self._heap and not self._finished and not self._closed:
                self._not_empty.wait()
            if self._closed or not self._heap:
                return None
            item = heapq.heappop(self._heap)[2]
            self._not_full.notify()
            return item

    def finish(self) -> None:
        """No more items will come: workers drain what is left, then stop."""
        with self._not_empty:
            self._finished = True
            self._not_empty.notify_all()

    def close(self) -> int:
        """Stop handing items out; returns how many were left unsent (a re-run sends them)."""
        with self._not_empty:
            self._closed = True
            left = len(self._heap)
            self._heap.clear()
            self._not_empty.notify_all()
            self._not_full.notify_all()
            return left
