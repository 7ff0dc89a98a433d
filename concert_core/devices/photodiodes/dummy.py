"""A simulated photodiode: a constant or a function of something else, plus noise."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import numpy as np
import pint

from concert_core.devices.photodiodes.base import PhotoDiode as BasePhotoDiode
from concert_core.devices.simulation import SimulatedDevice
from concert_core.quantities import q

#: Fault kinds of the dummy photodiode.
FAULTS = {
    "disconnected": "every read raises ConnectionError",
    "saturated": "every read returns the saturation voltage",
}

Source = Callable[[], "pint.Quantity | Awaitable[pint.Quantity]"]


class PhotoDiode(SimulatedDevice, BasePhotoDiode):
    """A dummy photodiode.

    It reads ``intensity`` unless :meth:`follow` made it a function of something (e.g. a
    simulated rocking curve), adds Gaussian noise of relative standard deviation ``noise`` and
    clips to ``[0, saturation]``.
    """

    FAULTS = FAULTS

    async def __ainit__(
        self,
        intensity: pint.Quantity | None = None,
        noise: float = 0.0,
        saturation: pint.Quantity | None = None,
        seed: int | None = None,
    ) -> None:
        """Defaults: 1 V, no noise, saturation at 10 V."""
        await super().__ainit__()
        convert = self["intensity"].parameter.convert
        self._constant = convert(1 * q.V if intensity is None else intensity)
        self._saturation = convert(10 * q.V if saturation is None else saturation)
        if noise < 0:
            raise ValueError(f"noise must not be negative, got {noise}")
        self._noise = noise
        self._rng = np.random.default_rng(seed)
        self._source: Source | None = None

    def follow(self, source: Source | None) -> None:
        """Make the intensity ``source()`` (sync or async, returns volts); ``None`` undoes it.

        Not a device command: simulations use it to couple the diode to other dummies.
        """
        self._source = source

    async def _get_intensity(self) -> pint.Quantity:
        if self.has_fault("disconnected"):
            raise ConnectionError("photodiode does not answer")
        if self.has_fault("saturated"):
            return self._saturation
        if self._source is None:
            value = self._constant
        else:
            value = self._source()
            if inspect.isawaitable(value):
                value = await value
            value = self["intensity"].parameter.convert(value)
        if self._noise:
            value = value * (1 + self._noise * self._rng.standard_normal())
        return min(max(value, 0 * q.V), self._saturation)

__all__ = ["FAULTS", "PhotoDiode"]
