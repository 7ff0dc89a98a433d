"""A device class of its own published through the bridge, for tests of event delivery.

``Ticker`` has no State: its long command (``tick``) cannot show that it started, and
``hold`` keeps the device's Tango monitor while it waits, as a slow hardware call does.
Run as ``python -m tests.ticker_server <instance>`` from the repository root (server
name ``Ticker``).
"""

from __future__ import annotations

import asyncio

from concert_core.coroutines import background
from concert_core.devices.base import Device
from concert_core.parameter import Parameter
from servers.bridge import tango_class
from servers.families import Published
from servers.main import serve


class Ticker(Device):
    """A counter announcing each new value; no State."""

    count = Parameter(help="ticks so far")

    async def __ainit__(self) -> None:
        await super().__ainit__()
        self._count = 0

    async def _get_count(self) -> int:
        return self._count

    def _next(self) -> None:
        self._count += 1
        self["count"].notify(self._count)

    @background
    async def tick(self, ticks: int, rate: float) -> None:
        """Count ``ticks`` times at ``rate`` per second, in the background."""
        for _ in range(ticks):
            self._next()
            await asyncio.sleep(1 / rate)

    async def hold(self, seconds: float) -> None:
        """Count once, then keep the call (and the device's monitor) for ``seconds``."""
        self._next()
        await asyncio.sleep(seconds)


PUBLISHED = Published("tests.ticker_server:Ticker", "tests.ticker_server:Ticker")

if __name__ == "__main__":
    serve([tango_class(PUBLISHED)], "Ticker")
