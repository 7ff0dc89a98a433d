"""The remote directory walker server (ConcertWalker, contract §8) and camera streaming:
confinement, WriteSequence from a camera server, failures, Cancel, RemoteDirectoryWalker."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tango

from benchmarks.bench_dataplane import StateEvents
from concert_core.coroutines import wait_until
from concert_core.dataplane import DataPlaneTimeout, ImageReceiver, ImageSender
from concert_core.devices.cameras.base import SEND_AHEAD
from concert_core.devices.cameras.dummy import Camera
from concert_core.devices.motors.dummy import LinearMotor
from concert_core.devices.shutters.dummy import Shutter
from concert_core.errors import SelectionError, StateError
from concert_core.quantities import q
from concert_core.remote import TangoDevice
from concert_core.remote.tango import STATE_ATTRIBUTES
from experiments import Consumer, FrameToken, RemoteImageWriter
from experiments.synchrotron import Radiography
from servers.bridge import _argin_type, decode_arguments
from servers.introspect import Kind, commands_of
from tests.support import collect, prepare_walker_and_camera, spy_on
from walkers import (
    PathError,
    StorageError,
    WriterClassChanged,
    read_hdf5,
    read_image,
    write_tiff,
)
from walkers import remote as remote_module
from walkers.device import WalkerDevice
from walkers.remote import RemoteDirectoryWalker

WALKER = "test/walker/1"
CAMERA = "test/wcamera/1"
SHAPE = (48, 64)
SOURCE_FRAMES = 6


@dataclass
class Servers:
    root: Path
    outside: Path
    sources: dict[str, np.ndarray]
    walker: tango.DeviceProxy
    camera: tango.DeviceProxy


@pytest.fixture(scope="module")
def servers(tango_servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """One walker server (root in a temporary directory) and one camera server serving a
    TIFF sequence of random frames (FileCamera), so every written frame can be checked
    against its source file (its ``file`` metadata)."""
    base = tmp_path_factory.mktemp("walker_server")
    root, outside, source = base / "root", base / "outside", base / "source"
    for path in (root, outside, source):
        path.mkdir()
    rng = np.random.default_rng(1)
    sources = {}
    for i in range(SOURCE_FRAMES):
        name = str(source / f"src_{i:02}.tif")
        sources[name] = rng.integers(0, 65535, SHAPE, dtype=np.uint16)
        write_tiff(name, sources[name])
    tango_servers.start_all(prepare_walker_and_camera(
        tango_servers, "wtest", WALKER, CAMERA, root, source, stream_timeout="5 s",
        frame_rate="2000 / s"))
    walker_proxy, camera_proxy = tango.DeviceProxy(WALKER), tango.DeviceProxy(CAMERA)
    camera_proxy.write_attribute("data_endpoint", "tcp://127.0.0.1:0")
    yield Servers(root, outside, sources, walker_proxy, camera_proxy)


@pytest.fixture
def walker(servers: Servers, request: pytest.FixtureRequest) -> tango.DeviceProxy:
    """The walker device at home in a fresh directory named after the test, writing TIFF."""
    proxy = servers.walker
    if proxy.state() == tango.DevState.RUNNING:
        proxy.Cancel()
    proxy.Home()
    proxy.write_attribute("writer_class", 0)
    proxy.write_attribute("dsetname", "frame_{:>06}.tif")
    proxy.write_attribute("stream_timeout", 5.0)
    proxy.Descend(request.node.name.replace("[", "_").replace("]", ""))
    return proxy


def wait_state(proxy: tango.DeviceProxy, timeout: float = 15.0) -> tango.DevState:
    """Wait until ``proxy`` leaves RUNNING; return its state."""
    deadline = time.monotonic() + timeout
    while (state := proxy.state()) == tango.DevState.RUNNING:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proxy.dev_name()} still RUNNING after {timeout} s")
        time.sleep(0.05)
    return state


def refused(reason: str, call, *args) -> tango.DevError:
    with pytest.raises(tango.DevFailed) as info:
        call(*args)
    assert info.value.args[0].reason == reason, info.value.args[0].desc
    return info.value.args[0]


def tree(path: Path) -> list[str]:
    return sorted(str(item.relative_to(path)) for item in path.rglob("*"))


def check_frames(servers: Servers, frames: list[np.ndarray], metadata: list[dict]) -> None:
    """Every written frame equals (checksum) the source file its metadata names."""
    assert frames and len(frames) == len(metadata)
    for frame, meta in zip(frames, metadata, strict=True):
        source = servers.sources[meta["file"]]
        assert frame.dtype == source.dtype and frame.shape == source.shape
        assert frame.tobytes() == source.tobytes()


# -- confinement ------------------------------------------------------------------------------
# A NUL cannot travel in a Tango string (CORBA cuts it off): the client refuses it
# (RemoteDirectoryWalker) and the device class does (test_walker_device_confinement).
ESCAPES = ["..", "../x", "a/../../x", "/", "/etc", str(Path("/tmp").resolve()), "",
           ".", "a//b", "a/", "link", "link/below"]


@pytest.mark.tango
def test_every_escape_is_refused_and_creates_nothing(servers: Servers, walker) -> None:
    here = Path(walker.read_attribute("current").value)
    os.symlink(servers.outside, here / "link")
    (here / "file.txt").write_text("x")
    os.symlink(here / "file.txt", here / "inside_link")  # pointing in: harmless
    before, outside_before = tree(servers.root), tree(servers.outside)
    for name in ESCAPES:
        refused("PathError", walker.Descend, name)
        refused("PathError", walker.Exists, name)
        refused("PathError", walker.LogToJson, ["{}", name])
        refused("PathError", walker.RegisterLogger, ["x", "20", name])
        if name != "link":  # a file name: refused when written (below)
            with pytest.raises(tango.DevFailed) as info:
                walker.write_attribute("dsetname", name)
            assert info.value.args[0].reason == "PathError"
    assert walker.read_attribute("current").value == str(here)
    assert walker.state() == tango.DevState.ON
    # a data set through the outside link: refused before anything is written
    walker.write_attribute("dsetname", "link")
    refused("PathError", walker.WriteSequence, "tcp://127.0.0.1:9")
    walker.write_attribute("writer_class", 1)  # HDF5 file "link.h5" must stay inside too
    os.symlink(servers.outside / "x.h5", here / "link.h5")
    refused("PathError", walker.WriteSequence, "tcp://127.0.0.1:9")
    os.unlink(here / "link.h5")
    assert tree(servers.root) == before and tree(servers.outside) == outside_before
    assert walker.Exists("inside_link") and walker.Exists("file.txt")
    assert not walker.Exists("missing")
    walker.Home()
    assert walker.Ascend() == str(servers.root)  # never above root


@pytest.mark.tango
def test_writer_class_refuses_unknown_formats(servers: Servers, walker) -> None:
    with pytest.raises(tango.DevFailed):
        walker.write_attribute("writer_class", 7)
    assert walker.read_attribute("writer_class").value == 0
    config = walker.get_attribute_config("writer_class")
    assert list(config.enum_labels) == ["TIFF", "HDF5"]


def test_walker_device_confinement(tmp_path: Path) -> None:
    """The device class itself (no Tango): NUL and every other escape, nothing created."""
    from walkers.device import WalkerDevice

    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()

    async def run() -> None:
        device = await WalkerDevice(root=str(root))
        os.symlink(outside, root / "link")
        for name in [*ESCAPES, "a\0b", "\0"]:
            calls = [device.descend, device.exists, lambda n: device.log_to_json("{}", n),
                     lambda n: device.register_logger("x", 20, n)]
            for call in calls + ([device.set_dsetname] if name != "link" else []):
                with pytest.raises(PathError):
                    await call(name)
        assert tree(root) == ["link"] and tree(outside) == []
        with pytest.raises(PathError):
            await WalkerDevice(root="relative/root")
        with pytest.raises(ValueError):
            await WalkerDevice(root="")

    asyncio.run(run())


def test_walker_device_counts_received_frames_live(tmp_path: Path) -> None:
    """frames_received reads what the writer thread has received, not the last report."""
    from walkers.device import WalkerDevice

    async def run() -> None:
        device = await WalkerDevice(root=str(tmp_path), stream_timeout=5 * q.s)
        async with ImageSender("tcp://127.0.0.1:0", timeout=5) as sender:
            writing = asyncio.ensure_future(device.write_sequence(sender.endpoint))
            for _ in range(3):
                await sender.send(np.ones((8, 8), np.uint16))
            def received() -> int:
                receiver = device._receiver
                return receiver.stream_received if receiver is not None else 0

            await wait_until(lambda: received() == 3, 0.002, timeout=5)
            assert await device.get_frames_received() == 3  # no counter period waited
            await sender.end()
            await writing
        assert await device.get_frames_received() == 3
        assert await device.get_frames_written() == 3

    asyncio.run(run())


# -- WriteSequence from the camera server -----------------------------------------------------
@pytest.mark.tango
@pytest.mark.parametrize("writer_class", ["TIFF", "HDF5"])
def test_write_sequence_from_camera_server(servers: Servers, walker, writer_class) -> None:
    count = 9  # more than the source has: the FileCamera loops
    endpoint = servers.camera.read_attribute("data_endpoint").value
    assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":0")
    walker.write_attribute("writer_class", ["TIFF", "HDF5"].index(writer_class))
    walker.write_attribute("dsetname", "proj_{:>04}.tif")
    walker.WriteSequence(endpoint)
    assert walker.state() == tango.DevState.RUNNING
    servers.camera.GrabSend(count)
    assert wait_state(walker) == tango.DevState.ON, walker.status()
    assert wait_state(servers.camera) == tango.DevState.ON
    assert walker.read_attribute("frames_written").value == count
    assert walker.read_attribute("frames_received").value == count
    assert walker.read_attribute("bytes_written").value == count * int(np.prod(SHAPE)) * 2
    assert walker.read_attribute("write_rate").value > 0
    here = Path(walker.read_attribute("current").value)
    if writer_class == "TIFF":
        files = sorted(here.glob("proj_*.tif"))
        assert [f.name for f in files] == [f"proj_{i:04}.tif" for i in range(count)]
        images = [read_image(str(f)) for f in files]
        check_frames(servers, images, [image.metadata for image in images])
    else:
        assert sorted(p.name for p in here.iterdir()) == ["proj.h5"]
        frames, metadata = read_hdf5(str(here / "proj.h5"), "proj")
        check_frames(servers, list(frames), metadata)
    # the same data set again is refused before anything happens; state stays ON
    refused("DatasetExistsError", walker.WriteSequence, endpoint)
    assert walker.state() == tango.DevState.ON


@pytest.mark.tango
def test_failed_write_sequence_faults_and_the_next_one_works(servers: Servers, walker) -> None:
    errors = walker.read_attribute("errors").value
    walker.write_attribute("stream_timeout", 0.3)
    walker.WriteSequence("tcp://127.0.0.1:9")  # nobody sends: a dead sender
    assert wait_state(walker) == tango.DevState.FAULT
    assert "DataPlaneTimeout" in walker.status()
    assert walker.read_attribute("errors").value == errors + 1
    here = Path(walker.read_attribute("current").value)
    assert list(here.iterdir()) == []  # nothing half-written

    # a writer error in the middle of a stream: HDF5 frames of changing shape
    walker.write_attribute("writer_class", 1)
    walker.write_attribute("stream_timeout", 5.0)

    async def send_bad() -> None:
        async with ImageSender("tcp://127.0.0.1:0", timeout=5) as sender:
            walker.WriteSequence(sender.endpoint)
            await sender.send(np.zeros((4, 4), np.uint16))
            await sender.send(np.zeros((5, 4), np.uint16))
            await sender.end()

    asyncio.run(send_bad())
    assert wait_state(walker) == tango.DevState.FAULT
    assert "StorageError" in walker.status()
    assert list(here.iterdir()) == []  # the file the failed sequence created is gone

    # the cause is gone: the next sequence works, FAULT is cleared
    walker.WriteSequence(servers.camera.read_attribute("data_endpoint").value)
    servers.camera.GrabSend(3)
    assert wait_state(walker) == tango.DevState.ON, walker.status()
    assert walker.read_attribute("frames_written").value == 3
    assert "error" not in walker.status()


@pytest.mark.tango
def test_the_benchmark_sees_each_sequence_end_by_state_events(servers: Servers, walker) -> None:
    """bench_dataplane's StateEvents: no end before a sequence began or while it runs,
    the end of each sequence once it came, and nothing left over from the one before."""
    endpoint = servers.camera.read_attribute("data_endpoint").value
    states = StateEvents(walker)
    try:
        for count in (2, 3):
            walker.Descend(f"sequence_{count}")  # a data set is never overwritten
            states.forget()
            assert not states.wait_left(tango.DevState.RUNNING, 0.2)  # nothing began
            walker.WriteSequence(endpoint)
            assert not states.wait_left(tango.DevState.RUNNING, 0.3)  # no frame sent yet
            servers.camera.GrabSend(count)
            assert states.wait_left(tango.DevState.RUNNING, 15)
            assert walker.state() == tango.DevState.ON, walker.status()
            assert walker.read_attribute("frames_written").value == count
    finally:
        states.close()


@pytest.mark.tango
def test_cancel_aborts_and_leaves_no_partial_file(servers: Servers, walker) -> None:
    async def partial() -> None:
        async with ImageSender("tcp://127.0.0.1:0", timeout=5) as sender:
            walker.WriteSequence(sender.endpoint)
            for _ in range(3):
                await sender.send(np.ones(SHAPE, np.uint16))
            deadline = time.monotonic() + 10
            while walker.read_attribute("frames_written").value < 3:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            walker.Cancel()

    asyncio.run(partial())
    assert walker.state() == tango.DevState.ON
    assert walker.status().startswith("standby")
    # complete files stay, the one being written is gone (no temporary .part files)
    here = Path(walker.read_attribute("current").value)
    names = sorted(p.name for p in here.iterdir())
    assert names == [f"frame_{i:06}.tif" for i in range(len(names))]
    assert len(names) <= walker.read_attribute("frames_written").value
    walker.Cancel()  # nothing to cancel: harmless


# -- the client ------------------------------------------------------------------------------
@pytest.mark.tango
def test_remote_directory_walker_like_a_local_walker(servers: Servers, walker) -> None:
    rng = np.random.default_rng(2)
    local = [rng.integers(0, 4096, SHAPE, dtype=np.uint16) for _ in range(5)]

    async def run() -> None:
        remote = await RemoteDirectoryWalker(WALKER, dsetname="img_{:>03}.tif")
        assert remote.root == str(servers.root)
        start = remote.current
        await remote.descend("a")
        assert remote.current == os.path.join(start, "a")
        with pytest.raises(PathError):
            await remote.descend("../../x")

        async def produce():
            for frame in local:
                yield frame

        writer = await remote.create_writer(produce(), name="darks")
        assert remote.current == os.path.join(start, "a")  # came back
        assert await writer == len(local)
        assert await remote.exists("darks", "img_004.tif")
        written = [read_image(os.path.join(remote.current, "darks", f"img_{i:03}.tif"))
                   for i in range(len(local))]
        assert all(np.array_equal(a, b) for a, b in zip(written, local, strict=True))

        # camera -> walker server directly, driven from here
        endpoint = servers.camera.read_attribute("data_endpoint").value
        task = asyncio.ensure_future(remote.write_sequence(endpoint, name="proj",
                                                           dsetname="p_{:>03}.tif"))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(servers.camera.GrabSend, 4)
        assert await task == 4
        assert await remote.exists("proj", "p_003.tif")
        assert remote.frames_written == len(local) + 4

        await remote.set_attribute("writer_class", "HDF5")
        with pytest.raises(SelectionError):
            await remote.set_attribute("writer_class", "ZARR")
        assert await remote.write(iter(local), dsetname="stack.h5") == len(local)
        frames, _ = read_hdf5(os.path.join(remote.current, "stack.h5"), "stack")
        assert np.array_equal(frames, np.stack(local))

        await remote.log_to_json({"energy": "20 keV"})
        assert json.loads(Path(remote.current, "experiment.json").read_text()) == \
            {"energy": "20 keV"}
        closer = await remote.register_logger("walker-test", logging.INFO, "exp.log")
        logging.getLogger("walker-test").info("hello remote")
        logging.getLogger("walker-test").debug("not written")
        await closer()
        text = Path(remote.current, "exp.log").read_text()
        assert "hello remote" in text and "not written" not in text
        await remote.home()
        assert remote.current == str(servers.root)
        await remote.disconnect()
        await remote.disconnect()  # twice is harmless
        # Without State events the end of a sequence is still found (by polling).
        assert await remote.write(iter(local), dsetname="after_{:>03}.tif") == len(local)

    asyncio.run(run())


@pytest.mark.tango
def test_the_end_of_a_sequence_is_read_once_after_its_state_event(servers: Servers, walker
                                                                  ) -> None:
    """Once a State event has shown a sequence's end, its counters come with State in one
    read. An end event that is not the sequence's own (the device still RUNNING) is
    caught by that read: the walker then reads State first, as without events. After
    more ends than sequences started here it always does so. Every count stays right."""
    endpoint = servers.camera.read_attribute("data_endpoint").value

    async def run() -> None:
        remote = await RemoteDirectoryWalker(WALKER, dsetname="f_{:>03}.tif")
        reads = spy_on(remote.device, "read_attributes")
        counted = (*remote_module._COUNTERS, *STATE_ATTRIBUTES)
        try:
            for number, count in enumerate((3, 5)):  # the first end also comes by event
                reads.clear()
                task = asyncio.ensure_future(
                    remote.write_sequence(endpoint, name=f"seq{number}"))
                await asyncio.sleep(0.2)
                await asyncio.to_thread(servers.camera.GrabSend, count)
                assert await task == count
                assert reads[-1] == counted and ("State", "Status") not in reads

            reads.clear()
            task = asyncio.ensure_future(remote.write_sequence(endpoint, name="stale"))
            await asyncio.sleep(0.2)  # running, no frame yet
            remote._watch.note(tango.DevState.RUNNING)  # an end event of no sequence here
            remote._watch.note(tango.DevState.ON)
            await wait_until(lambda: counted in reads, timeout=5)
            assert not task.done()  # the read showed RUNNING: not taken for the end
            await asyncio.to_thread(servers.camera.GrabSend, 4)
            assert await task == 4
            assert reads[-2:] == [("State", "Status"), remote_module._COUNTERS]

            # Another client's sequence: its events show one end more than sequences
            # were started here, so no end event can be told apart any more.
            remote._watch.note(tango.DevState.RUNNING)
            remote._watch.note(tango.DevState.ON)
            reads.clear()
            task = asyncio.ensure_future(remote.write_sequence(endpoint, name="after"))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(servers.camera.GrabSend, 2)
            assert await task == 2
            assert counted not in reads and reads[-1] == remote_module._COUNTERS
            assert remote.frames_written == 3 + 5 + 4 + 2
        finally:
            await remote.disconnect()
        for name, count in (("seq0", 3), ("seq1", 5), ("stale", 4), ("after", 2)):
            assert len(list((Path(remote.current) / name).glob("f_*.tif"))) == count

    asyncio.run(run())


@pytest.mark.tango
def test_a_start_for_another_writer_class_is_refused_and_creates_nothing(
        servers: Servers, walker) -> None:
    endpoint = servers.camera.read_attribute("data_endpoint").value
    here = Path(walker.read_attribute("current").value)

    async def run() -> None:
        remote = await RemoteDirectoryWalker(WALKER)
        try:
            with pytest.raises(WriterClassChanged) as info:  # the device writes TIFF
                await remote.start_sequence(endpoint, name="darks", dsetname="d_{:>03}.tif",
                                            writer_class="HDF5")
            assert info.value.writer_class == "TIFF"
            assert tree(here) == [] and remote.current == str(here)
            assert walker.state() == tango.DevState.ON
            with pytest.raises(SelectionError):
                await remote.start_sequence(endpoint, writer_class="ZARR")
            wait = await remote.start_sequence(endpoint, name="darks",
                                               dsetname="d_{:>03}.tif", writer_class="tiff")
            await asyncio.to_thread(servers.camera.GrabSend, 3)
            assert await wait == 3
            assert tree(here) == ["darks", *(f"darks/d_{i:03}.tif" for i in range(3))]
        finally:
            await remote.disconnect()

    asyncio.run(run())


@pytest.mark.tango
def test_remote_image_writer_follows_a_change_of_writer_class(servers: Servers, walker) -> None:
    # The writer assumes the writer class of its last start; the walker refuses a start in
    # the wrong one, and the writer starts again in the layout of the new one.
    here = Path(walker.read_attribute("current").value)

    async def run() -> None:
        camera, remote = await TangoDevice(CAMERA), await RemoteDirectoryWalker(WALKER)
        try:
            motor, shutter = await LinearMotor(), await Shutter()
            experiment = await Radiography(remote, motor, 0 * q.mm, 1 * q.mm, camera, shutter,
                                           num_flats=2, num_darks=2, num_projections=3)
            writer = RemoteImageWriter(experiment, remote)
            last_flags: list[bool] = []

            async def flags(tokens) -> None:
                async for token in tokens:
                    last_flags.append(token.last)

            Consumer([experiment.get_acquisition("radios")], flags)
            await experiment.run()
            walker.write_attribute("writer_class", 1)  # HDF5, by another client
            await experiment.run()
            assert writer.written == {"darks": 2, "flats": 2, "radios": 3}
            assert last_flags == [False, False, True] * 2  # the last token says so
        finally:
            walker.write_attribute("writer_class", 0)
            await camera.disconnect()
            await remote.disconnect()

    asyncio.run(run())
    first, second = here / "scan_0001", here / "scan_0002"
    assert [len(list((first / name).glob("frame_*.tif"))) for name in ("darks", "flats",
                                                                        "radios")] == [2, 2, 3]
    assert sorted(path.name for path in second.glob("*.h5")) == \
        ["darks.h5", "flats.h5", "radios.h5"]
    assert not [path for path in second.iterdir() if path.is_dir()]  # no TIFF directories
    frames, metadata = read_hdf5(str(second / "radios.h5"), "radios")
    assert frames.shape == (3, *SHAPE)
    check_frames(servers, list(frames), metadata)


#: Wait until a condition holds (WaitError after 10 s).
_until = functools.partial(wait_until, sleep_time=0.02, timeout=10.0)


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@contextlib.asynccontextmanager
async def _remote_radiography() -> AsyncIterator[tuple[Radiography, RemoteImageWriter]]:
    """A small radiography on the camera server, written by the walker server."""
    camera, remote = await TangoDevice(CAMERA), await RemoteDirectoryWalker(WALKER)
    try:
        experiment = await Radiography(remote, await LinearMotor(), 0 * q.mm, 1 * q.mm,
                                       camera, await Shutter(), num_flats=2, num_darks=2,
                                       num_projections=3)
        yield experiment, RemoteImageWriter(experiment, remote)
    finally:
        await camera.disconnect()
        await remote.disconnect()


@pytest.mark.tango
def test_an_acquisition_ends_before_its_metadata_are_stored_and_the_run_waits_for_them(
        servers: Servers, walker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The metadata go to the walker once the acquisition's frames are written, while the
    # next acquisition starts; all are stored in the run's entry before its last record.
    here = Path(walker.read_attribute("current").value)
    events: list[str] = []
    log_to_json = RemoteDirectoryWalker.log_to_json

    async def slow_log_to_json(self, payload, filename="experiment.json"):
        if filename.endswith("_metadata.json"):
            await asyncio.sleep(0.3)
        await log_to_json(self, payload, filename)
        events.append(f"stored {filename}")

    monkeypatch.setattr(RemoteDirectoryWalker, "log_to_json", slow_log_to_json)

    async def run() -> None:
        async with _remote_radiography() as (experiment, _):
            async def starts(name: str) -> None:
                events.append(f"{name} starts")

            experiment.before_acquisition = starts
            await experiment.run()

    asyncio.run(run())
    assert events.index("flats starts") < events.index("stored darks_metadata.json")
    assert events.index("radios starts") < events.index("stored flats_metadata.json")
    assert events[-2:] == ["stored radios_metadata.json", "stored experiment_finish.json"]
    scan = here / "scan_0001"
    for name, number in (("darks", 2), ("flats", 2), ("radios", 3)):
        stored = json.loads((scan / f"{name}_metadata.json").read_text())
        assert [item["index"] for item in stored] == list(range(number))


@pytest.mark.tango
def test_a_metadata_file_that_cannot_be_stored_fails_the_run_and_keeps_the_frames(
        servers: Servers, walker, monkeypatch: pytest.MonkeyPatch) -> None:
    here = Path(walker.read_attribute("current").value)
    log_to_json = RemoteDirectoryWalker.log_to_json

    async def failing_log_to_json(self, payload, filename="experiment.json"):
        if filename == "flats_metadata.json":
            raise OSError("disk full")
        await log_to_json(self, payload, filename)

    monkeypatch.setattr(RemoteDirectoryWalker, "log_to_json", failing_log_to_json)

    async def run() -> None:
        async with _remote_radiography() as (experiment, _):
            with pytest.raises(StorageError, match=r"flats_metadata\.json: OSError: disk full"):
                await experiment.run()
            assert await experiment.get_state() == "error"
            assert "flats_metadata.json" in experiment["state"].message

    asyncio.run(run())
    scan = here / "scan_0001"
    assert [len(list((scan / name).glob("frame_*.tif"))) for name in ("darks", "flats",
                                                                       "radios")] == [2, 2, 3]
    assert sorted(path.name for path in scan.glob("*_metadata.json")) == \
        ["darks_metadata.json", "radios_metadata.json"]
    finish = json.loads((scan / "experiment_finish.json").read_text())
    assert finish["state"] == "error" and "flats_metadata.json" in finish["message"]


@pytest.mark.tango
def test_every_metadata_file_that_cannot_be_stored_is_named(
        servers: Servers, walker, monkeypatch: pytest.MonkeyPatch) -> None:
    log_to_json = RemoteDirectoryWalker.log_to_json

    async def failing_log_to_json(self, payload, filename="experiment.json"):
        if filename in ("darks_metadata.json", "radios_metadata.json"):
            raise OSError(f"cannot write {filename}")
        await log_to_json(self, payload, filename)

    monkeypatch.setattr(RemoteDirectoryWalker, "log_to_json", failing_log_to_json)

    async def run() -> None:
        async with _remote_radiography() as (experiment, _):
            with pytest.raises(StorageError) as refused:
                await experiment.run()
            assert "darks_metadata.json: OSError" in str(refused.value)
            assert "radios_metadata.json: OSError" in str(refused.value)

    asyncio.run(run())


@pytest.mark.tango
def test_a_cancelled_acquisition_keeps_its_metadata_once_they_are_complete(
        servers: Servers, walker) -> None:
    # The producer is still cleaning up after its last token and the walker has not
    # written anything when the acquisition is cancelled: the metadata are complete and
    # stored. Cancelled before its last token, an acquisition stores none.
    here = Path(walker.read_attribute("current").value)

    async def run() -> None:
        async with _remote_radiography() as (experiment, writer):
            for name, tokens in (("radios", 3), ("flats", 1)):
                produced = asyncio.Event()

                async def producer(tokens=tokens, produced=produced):
                    for index in range(tokens):
                        token = FrameToken.new(last=index == 2)
                        token.metadata["index"] = index
                        yield token
                    produced.set()
                    await asyncio.Event().wait()  # cleaning up, or waiting for frames

                task = asyncio.ensure_future(writer._make_consumer(
                    experiment.get_acquisition(name))(producer()))
                # Set once the writer asked for more after the last token: it has them all.
                await asyncio.wait_for(produced.wait(), 5)
                assert not task.done()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await writer.stored()
                assert wait_state(walker) == tango.DevState.ON  # the sequence was cancelled

    asyncio.run(run())
    stored = here / "radios_metadata.json"
    assert [item["index"] for item in json.loads(stored.read_text())] == [0, 1, 2]
    assert not (here / "flats_metadata.json").exists()


@pytest.mark.tango
def test_remote_log_records_wait_for_a_sequence_or_the_close(
        servers: Servers, walker, monkeypatch: pytest.MonkeyPatch) -> None:
    # Records logged while the device writes no sequence are held (here: for as long as
    # a test runs), sent once a sequence is started, at once while one is written, and
    # at once by the close.
    here = Path(walker.read_attribute("current").value)
    log_file, log = here / "held.log", logging.getLogger("held")
    monkeypatch.setattr(remote_module, "LOG_HOLD_SECONDS", 60.0)
    endpoint = servers.camera.read_attribute("data_endpoint").value

    async def run() -> None:
        remote = await RemoteDirectoryWalker(WALKER)
        closer = await remote.register_logger("held", logging.INFO, "held.log")
        try:
            log.info("before the sequence")
            await asyncio.sleep(0.3)
            assert "before the sequence" not in _text(log_file)
            wait = await remote.start_sequence(endpoint, name="held", dsetname="h_{:>03}.tif")
            await _until(lambda: "before the sequence" in _text(log_file))
            log.info("while writing")
            await _until(lambda: "while writing" in _text(log_file))
            await asyncio.to_thread(servers.camera.GrabSend, 2)
            assert await wait == 2
            log.info("after the sequence")
            await asyncio.sleep(0.3)
            assert "after the sequence" not in _text(log_file)
            await closer()
            lines = _text(log_file).splitlines()
            assert [line.split(" ", 4)[-1] for line in lines] == \
                ["before the sequence", "while writing", "after the sequence"]
        finally:
            await closer()  # closing twice is harmless
            await remote.disconnect()

    asyncio.run(run())


@pytest.mark.tango
def test_a_held_log_record_goes_after_the_hold_time(
        walker, monkeypatch: pytest.MonkeyPatch) -> None:
    # No sequence comes: the record goes once LOG_HOLD_SECONDS (here 1 s, the default is
    # 0.5 s) have passed, not before.
    here = Path(walker.read_attribute("current").value)
    monkeypatch.setattr(remote_module, "LOG_HOLD_SECONDS", 1.0)

    async def run() -> None:
        remote = await RemoteDirectoryWalker(WALKER)
        closer = await remote.register_logger("idle", logging.INFO, "idle.log")
        try:
            logged = time.monotonic()
            logging.getLogger("idle").info("no sequence comes")
            await asyncio.sleep(0.3)
            assert "no sequence comes" not in _text(here / "idle.log")
            await _until(lambda: "no sequence comes" in _text(here / "idle.log"))
            assert time.monotonic() - logged >= 1.0
        finally:
            await closer()
            await remote.disconnect()

    asyncio.run(run())


# -- the camera side, locally -------------------------------------------------------------------
def test_camera_grab_send_and_stream_send_locally() -> None:
    async def run() -> None:
        camera = await Camera(width=32, height=16, frame_rate=1000 / q.s)
        assert await camera.get_data_endpoint() == ""
        with pytest.raises(Exception, match="data_endpoint"):
            await camera.grab_send(1)
        with pytest.raises(ValueError):
            await camera.set_data_endpoint("nonsense")
        await camera.set_data_endpoint("tcp://127.0.0.1:0")
        endpoint = await camera.get_data_endpoint()
        counted: list[int] = []
        camera["frames_grabbed"].subscribe(lambda _value, count: counted.append(count))
        async with ImageReceiver(endpoint, timeout=5) as receiver:
            task = camera.grab_send(5)
            frames = await collect(receiver)
            await task
            assert len(frames) == 5 and receiver.complete
            # the final count is announced by the time the send ends (not 50 ms later)
            assert counted[-1] == 5
            assert frames[0].shape == (16, 32) and "exposure_time" in frames[0].metadata
            assert await camera.get_state() == "standby"
            async with camera.recording():
                task = camera.stream_send()
                got = 0
                async for _ in receiver.frames():
                    got += 1
                    if got == 3:
                        await camera.stop_recording()
                await task
            assert got >= 3 and receiver.complete
        await camera.set_data_endpoint("")

    asyncio.run(run())


def test_a_sending_camera_grabs_ahead_of_a_late_receiver_and_no_further() -> None:
    """A running camera (AUTO, not buffered: it keeps only its newest frame) goes on
    grabbing while its receiver is not connected yet, up to SEND_AHEAD frames, and sends
    them all once it is: the frames are consecutive, none was skipped."""
    async def run() -> None:
        camera = await Camera(width=32, height=16, frame_rate=100 / q.s)
        await camera.set_data_endpoint("tcp://127.0.0.1:0")
        endpoint = await camera.get_data_endpoint()
        task = camera.grab_send(SEND_AHEAD + 4)

        async def ahead() -> bool:
            return await camera.get_frames_grabbed() >= SEND_AHEAD

        await wait_until(ahead, sleep_time=0.005, timeout=5)
        await asyncio.sleep(0.05)  # five frame periods: no more frames are taken
        assert await camera.get_frames_grabbed() == SEND_AHEAD
        async with ImageReceiver(endpoint, timeout=5) as receiver:
            frames = await collect(receiver)
            await task
            assert receiver.complete
        indices = [frame.metadata["index"] for frame in frames]
        assert indices[:SEND_AHEAD] == list(range(indices[0], indices[0] + SEND_AHEAD))
        assert len(frames) == SEND_AHEAD + 4
        await camera.set_data_endpoint("")

    asyncio.run(run())


def test_a_failed_grab_ends_the_send_after_the_frames_grabbed_before_it() -> None:
    """Frames grabbed ahead before a grab fails are all sent; the stream gets no end (the
    receiver does not take it as whole) and grab_send raises the grab's error."""
    async def run() -> None:
        camera = await Camera(width=32, height=16, frame_rate=200 / q.s)
        await camera.set_data_endpoint("tcp://127.0.0.1:0")
        endpoint = await camera.get_data_endpoint()
        async with ImageReceiver(endpoint, timeout=0.5) as receiver:
            task = camera.grab_send(50)
            frames = []
            with pytest.raises(DataPlaneTimeout):  # no end comes
                async for frame in receiver.frames():
                    frames.append(frame)
                    if len(frames) == 3:
                        await camera.inject_fault("grab")
            with pytest.raises(StateError, match="injected fault"):
                await task
            assert not receiver.complete
        assert 3 <= len(frames) == await camera.get_frames_grabbed() < 50
        assert [frame.metadata["index"] for frame in frames] == sorted(
            frame.metadata["index"] for frame in frames)

    asyncio.run(run())


@pytest.mark.tango
def test_log_takes_several_records_and_refuses_malformed_ones(walker) -> None:
    here = Path(walker.read_attribute("current").value)
    handler_id = walker.RegisterLogger(["batch", "20", "batch.log"])
    walker.Log([handler_id, "20", "first", "10", "below the level", "30", "third"])
    # Malformed: an odd tail, a level that is no number. Neither writes anything.
    refused("ValueError", walker.Log, [handler_id, "20", "lone", "30"])
    refused("ValueError", walker.Log, [handler_id, "20", "bad", "loud", "text"])
    walker.DeregisterLogger(handler_id)
    lines = (here / "batch.log").read_text().splitlines()
    assert [line.split()[-1] for line in lines] == ["first", "third"]

    async def burst() -> None:  # a client's records queued meanwhile go out together
        remote = await RemoteDirectoryWalker(WALKER)
        try:
            closer = await remote.register_logger("burst", logging.INFO, "burst.log")
            for index in range(300):
                logging.getLogger("burst").info("record %03d", index)
            await closer()
        finally:
            await remote.disconnect()

    asyncio.run(burst())
    text = (here / "burst.log").read_text().splitlines()
    assert [line.split()[-1] for line in text] == [f"{index:03d}" for index in range(300)]


def test_a_star_argument_is_published_as_the_tail_of_a_packed_command():
    spec = {spec.name: spec for spec in commands_of(WalkerDevice)}["Log"]
    assert spec.packed and _argin_type(spec) is tango.DevVarStringArray
    assert [argument.kind for argument in spec.arguments] == [Kind.STR, Kind.INT, Kind.STR]
    assert (spec.rest.name, spec.rest.kind) == ("more", Kind.STR)
    assert decode_arguments(spec, ["1:x.log", "20", "a"], WalkerDevice) == ("1:x.log", 20, "a")
    assert decode_arguments(spec, ["1:x.log", "20", "a", "30", "b"], WalkerDevice) == (
        "1:x.log", 20, "a", "30", "b")
    with pytest.raises(ValueError, match=r"handler_id, level, message, more\.\.\."):
        decode_arguments(spec, ["1:x.log", "20"], WalkerDevice)
    # Without one, extra values are still refused.
    register = {spec.name: spec for spec in commands_of(WalkerDevice)}["RegisterLogger"]
    with pytest.raises(ValueError, match="takes"):
        decode_arguments(register, ["x", "20", "x.log", "extra"], WalkerDevice)
