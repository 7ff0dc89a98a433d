"""A concert device with a stored double, published through the generic bridge.

The bridge's counterpart of ``reference_device.py`` for ``bench_tango.py``: it is what a
facility does to publish its own device class, with no Tango code. Run as
``python -m benchmarks.bridged_value <instance>`` from the repository root.
"""

from __future__ import annotations

import asyncio

from concert_core.base import Quantity
from concert_core.coroutines import background
from concert_core.devices.base import Device
from concert_core.quantities import q
from servers.bridge import tango_class
from servers.families import Published
from servers.main import serve


class StoredValue(Device):
    """A stored length and a source of paced change notifications."""

    value = Quantity(q.mm, help="a stored double")

    async def __ainit__(self) -> None:
        await super().__ainit__()
        self._value = 0.0 * q.mm

    async def _get_value(self) -> object:
        return self._value

    async def _set_value(self, value: object) -> None:
        self._value = value

    @background
    async def burst(self, count: int, rate: float) -> None:
        """Announce ``count`` new values (0, 1, 2, ... mm) at ``rate`` per second, in the
        background: the command returns at once and the events go out as they come."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index in range(count):
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._value = float(index) * q.mm
            self["value"].notify(self._value)


PUBLISHED = Published("benchmarks.bridged_value:StoredValue",
                      "benchmarks.bridged_value:StoredValue")

if __name__ == "__main__":
    serve([tango_class(PUBLISHED)], "BridgedValue")
