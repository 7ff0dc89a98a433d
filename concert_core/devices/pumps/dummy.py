"""A simulated pump that takes ``spin_time`` to start or stop."""

from __future__ import annotations

import asyncio

import pint

from concert_core.devices.pumps.base import Pump as BasePump
from concert_core.devices.simulation import SimulatedDevice
from concert_core.errors import StateError
from concert_core.quantities import q
from concert_core.state import transition

#: Fault kinds of the dummy pump.
FAULTS = {
    "clog": "a pumping pump goes to 'error' at once; otherwise the next start() fails "
            "halfway with StateError",
}


class Pump(SimulatedDevice, BasePump):
    """A dummy pump. An emergency stop halts it at once (state ``standby``)."""

    FAULTS = FAULTS

    async def __ainit__(self, flow_rate: pint.Quantity | None = None,
                        max_flow_rate: pint.Quantity | None = None,
                        spin_time: pint.Quantity | None = None) -> None:
        """Defaults: 10 ml/min, at most 100 ml/min, spin_time 0.1 s."""
        await super().__ainit__()
        convert = self["flow_rate"].parameter.convert
        await self["flow_rate"].set_upper(convert(
            100 * q.ml / q.min if max_flow_rate is None else max_flow_rate))
        self._flow_rate = convert(10 * q.ml / q.min if flow_rate is None else flow_rate)
        self._spin_time = float((0.1 * q.s if spin_time is None else spin_time).to(q.s).magnitude)

    async def _get_flow_rate(self) -> pint.Quantity:
        return self._flow_rate

    async def _set_flow_rate(self, value: pint.Quantity) -> None:
        self._flow_rate = value

    async def _spin(self) -> None:
        with self.operation():
            if self.take_fault("clog"):
                await asyncio.sleep(self._spin_time / 2)
                raise StateError("error", "pump clogged")
            await asyncio.sleep(self._spin_time)

    @transition(immediate="busy", target="pumping")
    async def _start(self) -> None:
        await self._spin()

    @transition(immediate="busy", target="standby")
    async def _stop(self) -> None:
        await self._spin()

    @transition(target="standby")
    async def _reset(self) -> None:
        pass

    async def _emergency_stop(self) -> None:
        await self.cancel_operation()
        if await self.get_state() != "error":
            self["state"].set_software("standby")

    async def inject_fault(self, kind: str) -> None:
        """Inject ``"clog"``: a pumping pump goes to ``error`` at once, otherwise the next
        start() fails halfway (StateError)."""
        if kind == "clog" and await self.get_state() == "pumping":
            self["state"].set_software("error", "pump clogged")
            return
        await super().inject_fault(kind)


__all__ = ["FAULTS", "Pump"]
