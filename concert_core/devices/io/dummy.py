"""Simulated digital I/O and binary signal."""

from __future__ import annotations

import asyncio

import numpy as np
import pint

from concert_core.devices.io.base import IO as BaseIO
from concert_core.devices.io.base import Signal as BaseSignal
from concert_core.devices.simulation import SimulatedDevice
from concert_core.errors import StateError
from concert_core.state import transition

#: Fault kinds of the dummy IO.
IO_FAULTS = {"disconnected": "every read_port/write_port raises ConnectionError"}
#: Fault kinds of the dummy signal.
SIGNAL_FAULTS = {"stuck": "the next on() or trigger() fails: state 'error' (StateError)"}


class IO(SimulatedDevice, BaseIO):
    """A dummy IO with ports ``0 .. num_ports - 1``, all readable and writable."""

    FAULTS = IO_FAULTS

    async def __ainit__(self, num_ports: int = 8, port_value: int = 0) -> None:
        """Every port starts at ``port_value``."""
        await super().__ainit__()
        if num_ports < 1:
            raise ValueError(f"num_ports must be at least 1, got {num_ports}")
        self._port_values = {port: int(port_value) for port in range(num_ports)}

    async def _get_ports(self) -> np.ndarray:
        return np.array(sorted(self._port_values), dtype=np.int64)

    def _check(self) -> None:
        if self.has_fault("disconnected"):
            raise ConnectionError("IO device does not answer")

    async def _read_port(self, port: int) -> int:
        self._check()
        return self._port_values[port]

    async def _write_port(self, port: int, value: int) -> None:
        self._check()
        self._port_values[port] = value


class Signal(SimulatedDevice, BaseSignal):
    """A dummy binary signal. An emergency stop switches it off at once."""

    FAULTS = SIGNAL_FAULTS

    async def __ainit__(self) -> None:
        await super().__ainit__()
        self.pulses = 0  # number of completed trigger pulses (for simulations)

    def _fail_if_stuck(self) -> None:
        if self.take_fault("stuck"):
            raise StateError("error", "signal line stuck")

    @transition(target="on")
    async def _on(self) -> None:
        self._fail_if_stuck()

    @transition(target="off")
    async def _off(self) -> None:
        pass

    @transition(immediate="on", target="off")
    async def _trigger(self, duration: pint.Quantity) -> None:
        self._fail_if_stuck()
        with self.operation():
            await asyncio.sleep(float(duration.magnitude))
        self.pulses += 1

    @transition(target="off")
    async def _reset(self) -> None:
        pass

    async def _emergency_stop(self) -> None:
        await self.cancel_operation()
        if await self.get_state() == "on":
            self["state"].set_software("off")


__all__ = ["IO", "IO_FAULTS", "SIGNAL_FAULTS", "Signal"]
