"""Concert devices for the director-server tests, published through ``concert_class``."""

from __future__ import annotations

import numpy as np
import pint

from concert_core.devices.cameras.dummy import Camera


class FailingCamera(Camera):
    """A dummy camera whose grab fails (state error) after ``fail_after`` frames in all."""

    async def __ainit__(self, fail_after: int = 10, width: int = 64, height: int = 64,
                        exposure_time: pint.Quantity | None = None) -> None:
        await super().__ainit__(width=width, height=height, exposure_time=exposure_time)
        self._fail_after = int(fail_after)
        self._total = 0

    async def _grab_real(self) -> np.ndarray:
        self._total += 1
        if self._total > self._fail_after:
            await self.inject_fault("grab")
        return await super()._grab_real()
