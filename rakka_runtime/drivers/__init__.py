"""Drivers: the I/O and the waiting of a request, once per concurrency model.

:mod:`.sync` runs a request on the calling thread over urllib3; :mod:`.aio` runs it as an
asyncio task over aiohttp. Both apply the same policies (:mod:`rakka_runtime.core.policy`),
the same provider codec and the same exchange rules (:mod:`rakka_runtime.core.exchange`).
"""
