"""Tests of the storage ring family and its dummy."""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import weakref

import pytest

from concert_core.devices.storagerings import StorageRing as BaseStorageRing
from concert_core.devices.storagerings.dummy import StorageRing
from concert_core.errors import ReadAccessError, WriteAccessError
from concert_core.quantities import q


async def test_parameters_units_and_read_only() -> None:
    ring = await StorageRing()
    assert isinstance(ring, BaseStorageRing)
    current = await ring.get_current()
    assert current.units == q.mA
    assert 199 * q.mA < current <= 200 * q.mA
    assert await ring.get_energy() == 2.5 * q.GeV
    assert await ring.get_lifetime() == 10 * q.h
    for name in ("current", "energy", "lifetime"):
        assert not ring[name].writable
        with pytest.raises(WriteAccessError):
            await ring[name].set(1 * ring[name].unit)
    assert await ring.get_energy() == 2.5 * q.GeV


async def test_base_reads_are_not_implemented() -> None:
    ring = await BaseStorageRing()
    with pytest.raises(ReadAccessError):
        await ring.get_current()


async def test_current_decays_with_lifetime() -> None:
    lifetime = 1 * q.s
    ring = await StorageRing(current=100 * q.mA, lifetime=lifetime, energy=6 * q.GeV)
    first = await ring.get_current()
    await asyncio.sleep(0.1)
    second = await ring.get_current()
    ratio = float((second / first).to(q.dimensionless).magnitude)
    # exp(-0.1) = 0.905; generous bounds for a loaded machine
    assert 0.5 < ratio < math.exp(-0.08)
    with pytest.raises(ValueError):
        await StorageRing(lifetime=0 * q.h)


async def test_current_is_announced_only_while_observed() -> None:
    ring = await StorageRing(lifetime=2 * q.s, notify_period=0.02 * q.s)
    seen = []
    unsubscribe = ring["current"].subscribe(lambda _, value: seen.append(value))
    await asyncio.sleep(0.25)
    unsubscribe()
    count = len(seen)
    assert count >= 5
    assert all(b < a for a, b in itertools.pairwise(seen))
    await asyncio.sleep(0.1)
    assert len(seen) == count


async def test_dropped_ring_is_collected_and_its_task_ends() -> None:
    ring = await StorageRing(notify_period=0.01 * q.s)
    ring["current"].subscribe(lambda *_: None)
    task = ring._monitor_task
    ref = weakref.ref(ring)
    await asyncio.sleep(0.03)
    del ring
    gc.collect()
    assert ref() is None
    await asyncio.wait_for(task, 1)
    assert task.done() and not task.cancelled()


async def test_faults() -> None:
    ring = await StorageRing()
    with pytest.raises(ValueError, match="beam_loss"):
        await ring.inject_fault("fire")
    seen = []
    ring["current"].subscribe(lambda _, value: seen.append(value))
    await ring.inject_fault("beam_loss")
    assert seen[-1] == 0 * q.mA
    assert await ring.get_current() == 0 * q.mA
    await ring.clear_fault()
    assert await ring.get_current() > 199 * q.mA
    await ring.inject_fault("readout")
    with pytest.raises(ConnectionError):
        await ring.get_energy()
    await ring.clear_fault()
    assert await ring.get_energy() == 2.5 * q.GeV
