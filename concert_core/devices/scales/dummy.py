"""Simulated scales with a load that simulations can change (:meth:`Scales.place`)."""

from __future__ import annotations

import asyncio

import numpy as np
import pint

from concert_core.devices.scales.base import Scales as BaseScales
from concert_core.devices.scales.base import TarableScales as BaseTarableScales
from concert_core.devices.simulation import SimulatedDevice
from concert_core.errors import LimitError
from concert_core.quantities import q
from concert_core.state import transition

#: Fault kinds of the dummy scales.
FAULTS = {
    "disconnected": "every read raises ConnectionError",
    "drift": "the reading drifts by +1 g per second until the fault is cleared",
}


class Scales(SimulatedDevice, BaseScales):
    """Dummy scales: ``weight`` = load - tare, plus Gaussian ``noise`` (g, standard deviation).

    Reading a load above ``capacity`` raises ``LimitError`` (overload).
    """

    FAULTS = FAULTS

    async def __ainit__(self, load: pint.Quantity | None = None,
                        capacity: pint.Quantity | None = None, noise: pint.Quantity | None = None,
                        seed: int | None = None) -> None:
        """Defaults: 100 g load, 2000 g capacity, no noise."""
        await super().__ainit__()
        convert = self["weight"].parameter.convert
        self._load = convert(100 * q.g if load is None else load)
        self._capacity = convert(2000 * q.g if capacity is None else capacity)
        self._noise = convert(0 * q.g if noise is None else noise)
        self._tare_offset = 0 * q.g
        self._rng = np.random.default_rng(seed)
        self._drift_since = 0.0

    def place(self, load: pint.Quantity) -> None:
        """Simulation: put a new total ``load`` on the scales (not a device command)."""
        self._load = self["weight"].parameter.convert(load)

    def _gross(self) -> pint.Quantity:
        if self.has_fault("disconnected"):
            raise ConnectionError("scales do not answer")
        if self._load > self._capacity:
            raise LimitError(f"overload: load exceeds the capacity {self._capacity:~}")
        value = self._load
        if self._noise.magnitude:
            value = value + self._noise * self._rng.standard_normal()
        if self.has_fault("drift"):
            value = value + (asyncio.get_running_loop().time() - self._drift_since) * q.g
        return value

    async def _get_weight(self) -> pint.Quantity:
        return self._gross() - self._tare_offset

    async def inject_fault(self, kind: str) -> None:
        """Inject ``"disconnected"`` (reads raise ConnectionError) or ``"drift"`` (+1 g/s)."""
        if kind == "drift" and not self.has_fault(kind):
            self._drift_since = asyncio.get_running_loop().time()
        await super().inject_fault(kind)


class TarableScales(Scales, BaseTarableScales):
    """Dummy scales that can be tared; taring takes ``tare_time`` (state ``busy``)."""

    async def __ainit__(self, load: pint.Quantity | None = None,
                        capacity: pint.Quantity | None = None, noise: pint.Quantity | None = None,
                        seed: int | None = None, tare_time: pint.Quantity | None = None) -> None:
        """As :class:`Scales`; ``tare_time`` defaults to 0.2 s."""
        await super().__ainit__(load=load, capacity=capacity, noise=noise, seed=seed)
        self._tare_time = float((0.2 * q.s if tare_time is None else tare_time).to(q.s).magnitude)

    @transition(immediate="busy", target="standby")
    async def _tare(self) -> None:
        with self.operation():
            await asyncio.sleep(self._tare_time)
            self._tare_offset = self._gross()
        self["weight"].notify(self._gross() - self._tare_offset)

    @transition(target="standby")
    async def _reset(self) -> None:
        pass

    async def _emergency_stop(self) -> None:
        await self.cancel_operation()


__all__ = ["FAULTS", "Scales", "TarableScales"]
