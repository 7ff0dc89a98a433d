"""A simulated storage ring whose current decays exponentially with its lifetime.

The current is computed from the elapsed time on every read, so no task is needed for the
value itself. To announce the decay to observers (the Tango bridge) a monitor task reads and
notifies the current every ``notify_period`` while someone observes ``current``. That task holds
only a weak reference to the ring: it ends by itself when the ring is garbage-collected, so a
dropped ring is collectable and no task outlives it. (An explicit start/stop pair would need the
bridge to know about it; starting a task on the first subscription would need a hook in the core.)
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref

import pint

from concert_core.devices.simulation import SimulatedDevice
from concert_core.devices.storagerings.base import StorageRing as BaseStorageRing
from concert_core.quantities import q

#: Fault kinds of the dummy ring.
FAULTS = {
    "beam_loss": "the beam is lost: the current drops to 0 mA (clear_fault refills it)",
    "readout": "every read raises ConnectionError (the ring's control system is unreachable)",
}

_monitors: set[asyncio.Task] = set()


async def _monitor(ring_ref: weakref.ref, period: float) -> None:
    """Announce the current of the ring behind ``ring_ref`` while it is observed and alive."""
    while True:
        ring = ring_ref()
        if ring is None:
            return
        current = ring["current"]
        if current.has_observers and not ring.has_fault("readout"):
            current.notify(ring._current_now())
        del ring, current  # hold no strong reference while sleeping
        await asyncio.sleep(period)


class StorageRing(SimulatedDevice, BaseStorageRing):
    """A dummy storage ring: ``current(t) = current * exp(-t / lifetime)``."""

    FAULTS = FAULTS

    async def __ainit__(
        self,
        current: pint.Quantity | None = None,
        energy: pint.Quantity | None = None,
        lifetime: pint.Quantity | None = None,
        notify_period: pint.Quantity | None = None,
    ) -> None:
        """Defaults: 200 mA, 2.5 GeV, 10 h; the current is announced every ``notify_period``
        (default 0.1 s) while observed."""
        await super().__ainit__()
        self._initial = self["current"].parameter.convert(
            200 * q.mA if current is None else current)
        self._energy = self["energy"].parameter.convert(2.5 * q.GeV if energy is None else energy)
        self._lifetime = self["lifetime"].parameter.convert(
            10 * q.h if lifetime is None else lifetime)
        if self._lifetime.magnitude <= 0:
            raise ValueError(f"lifetime must be positive, got {self._lifetime}")
        period = 0.1 * q.s if notify_period is None else notify_period
        self._period = float(period.to(q.s).magnitude)
        self._refill()
        task = asyncio.get_running_loop().create_task(_monitor(weakref.ref(self), self._period))
        _monitors.add(task)
        task.add_done_callback(_monitors.discard)
        self._monitor_task = task

    def _refill(self) -> None:
        self._start_current = self._initial
        self._start_time = time.monotonic()

    def _current_now(self) -> pint.Quantity:
        if self.has_fault("beam_loss"):
            return 0 * q.mA
        elapsed = (time.monotonic() - self._start_time) * q.s
        decay = math.exp(-float((elapsed / self._lifetime).to(q.dimensionless).magnitude))
        return self._start_current * decay

    def _check_readout(self) -> None:
        if self.has_fault("readout"):
            raise ConnectionError("storage ring control system unreachable")

    async def _get_current(self) -> pint.Quantity:
        self._check_readout()
        return self._current_now()

    async def _get_energy(self) -> pint.Quantity:
        self._check_readout()
        return self._energy

    async def _get_lifetime(self) -> pint.Quantity:
        self._check_readout()
        return self._lifetime

    async def inject_fault(self, kind: str) -> None:
        """Inject ``"beam_loss"`` (current 0 mA) or ``"readout"`` (reads raise
        ConnectionError)."""
        await super().inject_fault(kind)
        if kind == "beam_loss":
            self["current"].notify(0 * q.mA)

    async def clear_fault(self) -> None:
        """Remove every injected fault; after a beam loss the ring is refilled."""
        lost = self.has_fault("beam_loss")
        await super().clear_fault()
        if lost:
            self._refill()
            self["current"].notify(self._current_now())


__all__ = ["FAULTS", "StorageRing"]
