"""The request core: policy decisions, request state and the sans-IO exchange, free of I/O.

Drivers (:mod:`rakka_runtime.drivers`) do the waiting and the I/O the core asks for; the
same objects serve the thread driver and the asyncio driver.
"""
