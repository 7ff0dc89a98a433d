"""Cost of awaited Quantity get()/set() against a bare coroutine returning a stored value.

The Quantity has soft limits and a unit: ``get`` returns the stored value in the declared
unit (the common case of a getter), ``set`` is given micrometres for a millimetre
Quantity, so every set converts. Goal (issue 2): ``get`` under 5x the bare call.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from concert_core.base import Quantity
from concert_core.devices.base import Device
from concert_core.quantities import q

CALLS = 10_000
REPEATS = 5


class Stage(Device):
    position = Quantity(q.mm, lower=-1e6 * q.mm, upper=1e6 * q.mm)

    async def __ainit__(self) -> None:
        await super().__ainit__()
        self._position = 1 * q.mm

    async def _get_position(self) -> object:
        return self._position

    async def _set_position(self, value: object) -> None:
        self._position = value


async def per_call_us(call, argument=None) -> float:
    """Best of REPEATS runs of CALLS awaited calls, in microseconds per call."""
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        if argument is None:
            for _ in range(CALLS):
                await call()
        else:
            for _ in range(CALLS):
                await call(argument)
        runs.append((time.perf_counter() - start) / CALLS * 1e6)
    return min(runs)


async def main() -> None:
    stage = await Stage()
    param = stage["position"]
    stored = 1.0

    async def bare() -> float:
        return stored

    async def bare_set(value: float) -> None:
        nonlocal stored
        stored = value

    results = {
        "bare async def (get)": await per_call_us(bare),
        "Quantity.get()": await per_call_us(param.get),
        "device.get_position()": await per_call_us(stage.get_position),
        "bare async def (set)": await per_call_us(bare_set, 1.0),
        "Quantity.set(um -> mm)": await per_call_us(param.set, 1 * q.um),
        "Quantity.set(mm)": await per_call_us(param.set, 1 * q.mm),
    }
    width = max(map(len, results))
    print(f"bench_core: {CALLS} awaited calls, best of {REPEATS} runs")
    for name, value in results.items():
        print(f"  {name:<{width}} {value:8.3f} us/call")
    get_ratio = results["Quantity.get()"] / results["bare async def (get)"]
    set_ratio = results["Quantity.set(um -> mm)"] / results["bare async def (set)"]
    print(f"  get / bare = {get_ratio:.2f}x (goal < 5x: {'met' if get_ratio < 5 else 'NOT met'})")
    print(f"  set / bare = {set_ratio:.1f}x (pint unit conversion + limit check dominate)")


if __name__ == "__main__":
    asyncio.run(main())
