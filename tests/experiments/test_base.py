"""Acquisition and Experiment: running, hooks, state, walker entries, logs, metadata."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from concert_core.errors import TransitionNotAllowed
from concert_core.helpers import ImageWithMetadata
from experiments import Acquisition, Experiment
from walkers import DirectoryWalker, DummyWalker


def producer_of(count: int, log: list | None = None):
    async def produce():
        try:
            for i in range(count):
                yield ImageWithMetadata(np.full((4, 4), i, dtype=np.uint16), {"n": i})
        finally:
            if log is not None:
                log.append("cleanup")

    return produce


def collector(into: list):
    async def consume(producer):
        async for item in producer:
            into.append(item)

    return consume


async def test_acquisition_runs_again_and_again():
    first, second = [], []
    acquisition = await Acquisition("foo", producer_of(3), consumers=[collector(first)])
    acquisition.add_consumer(collector(second))
    await acquisition()
    await acquisition()
    assert len(first) == len(second) == 6
    assert [item.metadata["acquisition"] for item in first] == ["foo"] * 6
    assert acquisition.num_items == 3
    assert await acquisition.get_state() == "standby"


async def test_acquisition_acquire_runs_first_and_without_consumers():
    events = []

    async def acquire():
        events.append("acquire")

    async def produce():
        events.append("produce")
        yield 1

    acquisition = await Acquisition("bar", produce, acquire=acquire)
    await acquisition()
    assert events == ["acquire", "produce"]


async def test_acquisition_error_state_and_consumer_failure():
    async def bad(producer):
        async for _ in producer:
            raise RuntimeError("consumer broke")

    log = []
    acquisition = await Acquisition("baz", producer_of(100, log), consumers=[bad])
    with pytest.raises(RuntimeError, match="consumer broke"):
        await acquisition()
    assert await acquisition.get_state() == "error"
    assert "consumer broke" in acquisition["state"].message
    assert log == ["cleanup"]


async def test_acquisition_names_must_be_identifiers():
    with pytest.raises(ValueError, match="identifier"):
        await Acquisition("not a name", producer_of(1))


async def test_experiment_manages_acquisitions():
    a = await Acquisition("a", producer_of(1))
    b = await Acquisition("b", producer_of(1))
    c = await Acquisition("c", producer_of(1))
    experiment = await Experiment([a, b])
    assert experiment.a is a and experiment.acquisitions == (a, b)
    experiment.add(c)
    assert experiment.c is c
    experiment.swap(a, c)
    assert [x.name for x in experiment.acquisitions] == ["c", "b", "a"]
    experiment.remove(b)
    assert not hasattr(experiment, "b")
    assert experiment.get_acquisition("a") is a
    with pytest.raises(ValueError):
        experiment.get_acquisition("b")
    with pytest.raises(AttributeError):
        experiment.acquisitions = ()
    with pytest.raises(ValueError, match="clashes"):
        experiment.add(await Acquisition("run", producer_of(1)))


async def test_experiment_runs_in_order_with_hooks(tmp_path):
    seen = []
    hooks = []

    class Hooked(Experiment):
        async def prepare(self):
            hooks.append("prepare")

        async def finish(self):
            hooks.append("finish")

    acquisitions = [await Acquisition(name, producer_of(2), consumers=[collector(seen)])
                    for name in ("darks", "flats", "radios")]
    walker = await DirectoryWalker(root=str(tmp_path))
    experiment = await Hooked(acquisitions, walker)
    await experiment.run()
    await experiment.run()
    assert [item.metadata["acquisition"] for item in seen[:6]] == \
        ["darks"] * 2 + ["flats"] * 2 + ["radios"] * 2
    assert hooks == ["prepare", "finish"] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan_0001", "scan_0002"]
    scan = tmp_path / "scan_0001"
    assert {"experiment.log", "experiment_start.json", "experiment_finish.json"} <= \
        {p.name for p in scan.iterdir()}
    assert "acquisition radios done" in (scan / "experiment.log").read_text()
    finish = json.loads((scan / "experiment_finish.json").read_text())
    assert finish["state"] == "standby"
    assert finish["experiment"]["separate_scans"] is True
    assert finish["acquisitions"] == ["darks", "flats", "radios"]
    assert await experiment.get_frames_done() == 6
    assert experiment.ready_to_prepare_next_sample.is_set()
    assert walker.current == str(tmp_path)


async def test_existing_scan_names_are_skipped(tmp_path):
    (tmp_path / "scan_0001").mkdir()
    walker = await DirectoryWalker(root=str(tmp_path))
    experiment = await Experiment([await Acquisition("a", producer_of(1))], walker)
    await experiment.run()
    assert await experiment.get_current_name() == "scan_0002"


async def test_experiment_without_separate_scans_writes_here():
    walker = await DummyWalker(root="/data")
    await walker.descend("sample")
    experiment = await Experiment([await Acquisition("a", producer_of(1))], walker,
                                  separate_scans=False)
    await experiment.run()
    assert "/data/sample/experiment_start.json" in walker.logs
    assert "/data/sample/experiment_finish.json" in walker.logs


async def test_error_leaves_error_state_and_runs_finish():
    finished = []

    async def broken():
        yield 1
        raise ValueError("detector on fire")

    class Recorded(Experiment):
        async def finish(self):
            finished.append(True)

    walker = await DummyWalker()
    experiment = await Recorded([await Acquisition("a", broken)], walker)
    with pytest.raises(ValueError, match="on fire"):
        await experiment.run()
    assert await experiment.get_state() == "error"
    assert "detector on fire" in experiment["state"].message
    assert finished == [True]
    finish = json.loads(walker.logs["scan_0001/experiment_finish.json"])
    assert finish["state"] == "error" and "on fire" in finish["message"]
    # another run is allowed after an error
    experiment.remove(experiment.a)
    await experiment.run()
    assert await experiment.get_state() == "standby"


async def test_cancel_and_run_twice_refused():
    started = asyncio.Event()
    log = []

    async def endless():
        try:
            while True:
                started.set()
                await asyncio.sleep(0.001)
                yield 1
        finally:
            log.append("producer cleaned up")

    experiment = await Experiment([await Acquisition("a", endless)])
    task = experiment.run()
    await started.wait()
    with pytest.raises(TransitionNotAllowed):
        await experiment.run()
    with pytest.raises(TransitionNotAllowed):
        await experiment.set_name_fmt("x_{}")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await experiment.get_state() == "cancelled"
    assert log == ["producer cleaned up"]


async def test_ready_to_prepare_next_sample_set_early():
    flags = []

    class Early(Experiment):
        async def __ainit__(self):
            await super().__ainit__([await Acquisition("a", self._produce)])

        async def _produce(self):
            yield 1
            self.ready_to_prepare_next_sample.set()
            await asyncio.sleep(0.05)
            yield 2

    experiment = await Early()
    task = experiment.run()
    await asyncio.wait_for(experiment.ready_to_prepare_next_sample.wait(), 1)
    flags.append(task.done())
    await task
    assert flags == [False]


async def test_parameters_and_log_level():
    experiment = await Experiment([])
    await experiment.set_log_level("debug")
    await experiment.set_iteration(5)
    assert await experiment.get_iteration() == 5
    with pytest.raises(ValueError):
        await experiment.set_separate_scans("yes")
    with pytest.raises(ValueError):
        await experiment.set_iteration(0)
    assert await experiment.get_log_level() == "debug"
