"""Tests of the IO and Signal families and their dummies."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from concert_core.devices.io import IO as BaseIO
from concert_core.devices.io import Signal as BaseSignal
from concert_core.devices.io.dummy import IO, Signal
from concert_core.errors import StateError, TransitionNotAllowed, UnitError, WriteAccessError
from concert_core.quantities import q


async def test_ports_read_write() -> None:
    io = await IO(num_ports=4, port_value=1)
    assert isinstance(io, BaseIO)
    np.testing.assert_array_equal(await io.get_ports(), [0, 1, 2, 3])
    with pytest.raises(WriteAccessError):
        await io.set_ports(np.array([1]))
    assert await io.read_port(2) == 1
    await io.write_port(2, 5)
    assert await io.read_port(2) == 5
    assert await io.read_port(1) == 1


async def test_invalid_ports_and_values() -> None:
    io = await IO(num_ports=2)
    for port in (2, -1, 1.0, "0", True):
        with pytest.raises(ValueError, match=r"ports: \[0, 1\]"):
            await io.read_port(port)
        with pytest.raises(ValueError, match="does not exist"):
            await io.write_port(port, 1)
    for value in (-1, 1.5, "1", True):
        with pytest.raises(ValueError, match="non-negative integer"):
            await io.write_port(0, value)
    assert await io.read_port(0) == 0
    with pytest.raises(ValueError):
        await IO(num_ports=0)


async def test_io_fault() -> None:
    io = await IO()
    with pytest.raises(ValueError, match="disconnected"):
        await io.inject_fault("smoke")
    await io.inject_fault("disconnected")
    with pytest.raises(ConnectionError):
        await io.read_port(0)
    with pytest.raises(ConnectionError):
        await io.write_port(0, 1)
    await io.clear_fault()
    assert await io.read_port(0) == 0


async def test_signal_on_off_and_refusals() -> None:
    signal = await Signal()
    assert isinstance(signal, BaseSignal)
    assert await signal.get_state() == "off"
    with pytest.raises(TransitionNotAllowed):
        await signal.off()
    await signal.on()
    assert await signal.get_state() == "on"
    with pytest.raises(TransitionNotAllowed):
        await signal.on()
    with pytest.raises(TransitionNotAllowed):
        await signal.trigger()
    assert await signal.get_state() == "on"
    await signal.off()
    assert await signal.get_state() == "off"


async def test_trigger_pulse() -> None:
    signal = await Signal()
    states = []
    signal["state"].subscribe(lambda _, value: states.append(value))
    began = time.monotonic()
    await signal.trigger(50 * q.ms)
    assert 0.04 < time.monotonic() - began < 1
    assert states == ["on", "off"] and signal.pulses == 1
    await signal.trigger()  # default 10 ms
    assert signal.pulses == 2
    for duration, error in [(1 * q.mm, UnitError), (0 * q.s, ValueError), (5, UnitError)]:
        with pytest.raises(error):
            await signal.trigger(duration)
    assert signal.pulses == 2 and await signal.get_state() == "off"


async def test_signal_fault_and_emergency_stop() -> None:
    signal = await Signal()
    with pytest.raises(ValueError, match="stuck"):
        await signal.inject_fault("loose")
    await signal.inject_fault("stuck")
    with pytest.raises(StateError):
        await signal.on()
    assert await signal.get_state() == "error"
    await signal.reset()
    await signal.clear_fault()
    task = signal.trigger(2 * q.s)
    await asyncio.sleep(0.02)
    assert await signal.get_state() == "on"
    await signal.emergency_stop()
    assert task.cancelled()
    assert await signal.get_state() == "off"
    await signal.on()
    await signal.emergency_stop()
    assert await signal.get_state() == "off"
