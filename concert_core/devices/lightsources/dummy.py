"""A simulated light source."""

from __future__ import annotations

import pint

from concert_core.devices.lightsources.base import LightSource as BaseLightSource
from concert_core.devices.simulation import SimulatedDevice
from concert_core.errors import StateError
from concert_core.quantities import q
from concert_core.state import transition

#: Fault kinds of the dummy light source.
FAULTS = {
    "lamp_failure": "the lamp burns out: a lit source goes to 'error' at once, otherwise the "
                    "next on() fails (StateError)",
}


class LightSource(SimulatedDevice, BaseLightSource):
    """A dummy light source. An emergency stop switches it off."""

    FAULTS = FAULTS

    async def __ainit__(self, intensity: pint.Quantity | None = None,
                        max_intensity: pint.Quantity | None = None) -> None:
        """Defaults: 1 V set point, at most 5 V."""
        await super().__ainit__()
        convert = self["intensity"].parameter.convert
        await self["intensity"].set_upper(convert(5 * q.V if max_intensity is None
                                                  else max_intensity))
        self._intensity = convert(1 * q.V if intensity is None else intensity)

    async def _get_intensity(self) -> pint.Quantity:
        return self._intensity

    async def _set_intensity(self, value: pint.Quantity) -> None:
        self._intensity = value

    @transition(target="on")
    async def _on(self) -> None:
        if self.has_fault("lamp_failure"):
            raise StateError("error", "lamp burnt out")

    @transition(target="off")
    async def _off(self) -> None:
        pass

    @transition(target="off")
    async def _reset(self) -> None:
        pass

    async def _emergency_stop(self) -> None:
        if await self.get_state() == "on":
            self["state"].set_software("off")

    async def inject_fault(self, kind: str) -> None:
        """Inject ``"lamp_failure"``: a lit source goes to ``error`` at once, otherwise the
        next on() fails."""
        await super().inject_fault(kind)
        if await self.get_state() == "on":
            self["state"].set_software("error", "lamp burnt out")

__all__ = ["FAULTS", "LightSource"]
