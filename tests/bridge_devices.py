"""Concert device classes the bridge tests publish through ``concert_class``.

The servers import them by ``tests.bridge_devices:Name``, so they need the repository
root on their ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pint

from concert_core.devices.motors import dummy
from concert_core.parameter import Parameter
from concert_core.quantities import q


class LimitedLinearMotor(dummy.LinearMotor):
    """A dummy linear motor with user soft limits (default -10 mm .. 10 mm)."""

    async def __ainit__(self, lower: pint.Quantity | None = None,
                        upper: pint.Quantity | None = None, **kwargs: Any) -> None:
        await super().__ainit__(**kwargs)
        await self["position"].set_lower(-10 * q.mm if lower is None else lower)
        await self["position"].set_upper(10 * q.mm if upper is None else upper)


class LockedLimitsMotor(LimitedLinearMotor):
    """Soft limits -10 mm .. 10 mm, locked at construction."""

    async def __ainit__(self, **kwargs: Any) -> None:
        await super().__ainit__(**kwargs)
        self["position"].lock_limits()


class HomeFaultMotor(dummy.LinearMotor):
    """Its first ``home`` fails (injected fault 'home'): state error, StateError."""

    async def __ainit__(self, **kwargs: Any) -> None:
        await super().__ainit__(**kwargs)
        await self.inject_fault("home")


class StallingMotor(dummy.LinearMotor):
    """Its first motion stalls midway (injected fault 'stall'): state error, StateError."""

    async def __ainit__(self, **kwargs: Any) -> None:
        await super().__ainit__(**kwargs)
        await self.inject_fault("stall")


class CountedReadsMotor(dummy.LinearMotor):
    """Counts how often its parameters ``first`` and ``second`` are read from the device
    (``fetches``); reading ``broken`` always fails."""

    first = Parameter(help="1, counted")
    second = Parameter(help="2, counted")
    broken = Parameter(help="cannot be read")
    fetches = Parameter(help="reads of first and second so far")

    async def __ainit__(self, **kwargs: Any) -> None:
        self._fetches = 0
        await super().__ainit__(**kwargs)

    async def _get_first(self) -> int:
        self._fetches += 1
        return 1

    async def _get_second(self) -> int:
        self._fetches += 1
        return 2

    async def _get_broken(self) -> int:
        raise RuntimeError("the sensor is unplugged")

    async def _get_fetches(self) -> int:
        return self._fetches


class SlowNoteMotor(dummy.LinearMotor):
    """Moves at 1 mm/s and has ``note``, a parameter its controller takes 0.3 s to store."""

    note = Parameter(help="a text, stored in 0.3 s")

    async def __ainit__(self) -> None:
        self._note = ""
        await super().__ainit__(speed=1 * q.mm / q.s)

    async def _get_note(self) -> str:
        return self._note

    async def _set_note(self, value: str) -> None:
        await asyncio.sleep(0.3)
        self._note = str(value)
