"""Policy state shared by many processes through Redis: rate-limit buckets, concurrency
slots and the 429 pause (:mod:`.redis_admission`), and the circuit state
(:mod:`.redis_circuit`), behind the interfaces the local ones implement.

Every change is one Lua script run atomically in Redis on Redis's own clock (``TIME``), so
the processes' clocks never matter. :mod:`.redis_store` owns the connection and what
happens when Redis cannot be reached: fall back to the process's local policy (or reject),
warn once, and try Redis again at most every ``retry_interval``.

Importing this package imports nothing from ``redis``; connecting does.
"""
