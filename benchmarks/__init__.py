"""Benchmarks: a loopback bench server, a floor client, the runtime client and a report.

Run ``python -m benchmarks.run`` (full) or ``python -m benchmarks.run --smoke`` (CI-sized).
Results and how they were made live in ``docs/benchmarks.md``.
"""
