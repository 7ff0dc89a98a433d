"""Frames in shared memory (``ImageSender(shared_memory=True)``): real ZMQ sockets, real
segments under /dev/shm, real files and, at the end, real camera and walker servers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tango
import zmq
import zmq.asyncio

from concert_core.dataplane import (
    Broadcaster,
    DataPlaneTimeout,
    FrameError,
    ImageReceiver,
    ImageSender,
    SharedRing,
    decode,
    encode_end,
    encode_header,
)
from concert_core.dataplane import sender as sender_module
from concert_core.dataplane import shared as shared_module
from concert_core.dataplane.shared import SHM_DIR, SharedFrames
from concert_core.devices.cameras.dummy import Camera, FileCamera
from concert_core.helpers import ImageWithMetadata
from concert_core.quantities import q
from tests.support import collect, prepare_walker_and_camera
from walkers import DirectoryWalker, HDF5Walker, read_hdf5, read_image, write_tiff

pytestmark = pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason="needs /dev/shm")

SHAPE = (256, 256)  # 128 KiB of uint16: above the shared-memory threshold


def segments() -> set[str]:
    """Names of this process's segments in /dev/shm."""
    prefix = f"concert-{os.getpid()}-"
    return {name for name in os.listdir(SHM_DIR) if name.startswith(prefix)}


@pytest.fixture(autouse=True)
def no_segment_left() -> Iterator[None]:
    """Every test leaves /dev/shm as it found it (once its frames are collected)."""
    before = segments()
    yield
    gc.collect()
    deadline = time.monotonic() + 5
    while segments() - before and time.monotonic() < deadline:
        time.sleep(0.02)  # a closed sender unlinks once its slots are free (a thread)
    assert segments() - before == set()


def frame_of(i: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 65535, shape, dtype=np.uint16)


async def stream_through_ring(endpoint: str, slots: int, count: int) -> None:
    """``count`` frames, two of three made in a slot, one copied into one; every frame
    arrives in order with its data and metadata."""
    pool = [frame_of(i) for i in range(7)]
    sums: list[int] = []
    async with (
        ImageSender(endpoint, shared_memory=True, slots=slots, timeout=5) as sender,
        ImageReceiver(sender.endpoint, timeout=5) as receiver,
    ):

        async def produce() -> None:
            for i in range(count):
                if i % 3:  # made in a slot
                    frame = await sender.buffer(SHAPE, np.uint16)
                    frame[...] = pool[i % 7]
                else:  # an ordinary array, copied into a slot
                    frame = pool[i % 7].copy()
                frame[0, 0] = i % 65536
                sums.append(zlib.crc32(frame))
                await sender.send(frame, {"i": i, "angle": i * 0.5 * q.deg})
            assert await sender.end() == count

        task = asyncio.create_task(produce())
        got: list[int] = []
        async for frame in receiver.frames():
            assert frame.metadata == {"i": len(got), "angle": f"{len(got) * 0.5} degree",
                                      "index": len(got)}
            assert frame.dtype == np.uint16 and frame.shape == SHAPE
            assert not frame.flags.writeable  # a read-only view on the slot
            got.append(zlib.crc32(frame))
        await task
        assert got == sums
        assert receiver.complete and receiver.refused == 0 and receiver.missed == 0
        assert len(sender.segments) == 1 and receiver._shared.attached == sender.segments


@pytest.mark.parametrize(("endpoint", "slots"), [("ipc://*", 2), ("tcp://127.0.0.1:0", 4)])
async def test_thousands_of_frames_through_a_small_ring_keep_order_and_data(endpoint, slots):
    await stream_through_ring(endpoint, slots, 3000)


async def test_buffer_and_send_is_zero_copy(monkeypatch):
    async def no_copy(*args) -> None:
        raise AssertionError("a buffer frame was copied")

    monkeypatch.setattr(sender_module, "_copy_into", no_copy)
    async with (
        ImageSender("ipc://*", shared_memory=True, slots=3) as sender,
        ImageReceiver(sender.endpoint, timeout=5) as receiver,
    ):
        buffer = await sender.buffer(SHAPE, "<f4")
        buffer[...] = np.arange(buffer.size, dtype=np.float32).reshape(SHAPE)
        task = asyncio.create_task(anext(receiver.frames()))
        await sender.send(ImageWithMetadata(buffer, {"made": "in place"}))
        frame = await task
        assert not buffer.flags.writeable  # the slot is the receiver's now
        np.testing.assert_array_equal(frame, np.arange(frame.size).reshape(SHAPE))
        assert frame.metadata == {"made": "in place", "index": 0}
        # the receiver's frame is the very slot the sender rendered into (same file page)
        ring = sender._ring
        assert ring.busy() == 1
        del frame, task
        await asyncio.sleep(0)  # the loop lets go of the task's result
        gc.collect()
        assert ring.busy() == 0  # given back when the frame was collected
        # a buffer dropped unsent frees its slot too
        unsent = await sender.buffer(SHAPE, np.uint16)
        assert ring.busy() == 1
        del unsent
        gc.collect()
        assert ring.busy() == 0


async def test_views_keep_the_slot_busy_and_any_thread_in_any_order_frees_it():
    async with (
        ImageSender("ipc://*", shared_memory=True, slots=6) as sender,
        ImageReceiver(sender.endpoint, timeout=5) as receiver,
    ):
        task = asyncio.create_task(collect(receiver))
        for i in range(6):
            await sender.send(frame_of(i))
        await sender.end()
        frames = await task
        ring = sender._ring
        assert ring.busy() == 6
        views = [np.asarray(frames[0])[10:20], memoryview(frames[1]), frames[2].T]
        del frames[:3]
        gc.collect()
        assert ring.busy() == 6  # views and memoryviews keep their frames alive
        np.testing.assert_array_equal(views[0], frame_of(0)[10:20])
        views.clear()
        gc.collect()
        assert ring.busy() == 3
        random.shuffle(frames)
        threads = [threading.Thread(target=frames.pop) for _ in range(3)]
        for thread in threads:
            thread.start()
            thread.join()
        gc.collect()
        assert ring.busy() == 0


def mappings_of(path: str) -> list[tuple[str, int, int]]:
    """This process's mappings of ``path``: (permissions, Size, Rss), sizes in KiB."""
    found: list[tuple[str, int, int]] = []
    ours = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's first line
                ours = fields[-1] == path
                if ours:
                    found.append((fields[1], 0, 0))
            elif ours and fields[0] in ("Size:", "Rss:"):
                permissions, size, rss = found[-1]
                value = int(fields[1])
                found[-1] = ((permissions, value, rss) if fields[0] == "Size:"
                             else (permissions, size, value))
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps")
def test_segments_are_mapped_with_their_page_tables_filled():
    """Sender and receiver map a segment with every page in place (MAP_POPULATE), so the
    first frame in each slot pays no fault per page (the first frames of a stream were
    the slowest)."""
    ring = SharedRing(4 << 20, slots=4)
    shared = SharedFrames()
    try:
        slot = ring.take()
        frame, free = shared.array(ring.ref(slot, 4 << 20), np.dtype(np.uint8), (4 << 20,))
        mappings = sorted(mappings_of(ring.path))
        page = os.sysconf("SC_PAGESIZE") >> 10
        # The receiver's slots (read-only) and the sender's whole segment have every
        # page mapped though no slot was touched; the receiver's control area (one
        # page) was read when it checked the slot.
        assert [(permissions, size) for permissions, size, _ in mappings] == [
            ("r--s", 16 << 10), ("rw-s", page), ("rw-s", (16 << 10) + page)]
        assert all(rss == size for _, size, rss in mappings), mappings
        del frame
        free()
    finally:
        shared.close()
        ring.close()


async def test_a_receiver_holding_every_slot_times_out_the_sender():
    async with (
        ImageSender("ipc://*", shared_memory=True, slots=3, timeout=0.5) as sender,
        ImageReceiver(sender.endpoint, timeout=5) as receiver,
    ):
        held = []

        async def hold() -> None:
            async for frame in receiver.frames():
                held.append(frame)  # e.g. a preview that never lets go

        task = asyncio.create_task(hold())
        for i in range(3):
            await sender.send(frame_of(i))
        began = time.monotonic()
        with pytest.raises(DataPlaneTimeout, match=re.escape(sender.endpoint)):
            await sender.send(frame_of(3))
        assert 0.4 < time.monotonic() - began < 2
        with pytest.raises(DataPlaneTimeout, match="slot"):
            await sender.buffer(SHAPE, np.uint16)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sender.restart()  # the stream is abandoned: the next one gets a fresh ring
        old = sender._ring
        held.clear()
        del task  # its traceback holds the last frame
        await asyncio.sleep(0)
        gc.collect()
        assert old.busy() == 0


async def test_frames_lost_with_their_receiver_cost_the_next_stream_nothing():
    sender = ImageSender("ipc://*", shared_memory=True, slots=4, timeout=5)
    receiver = ImageReceiver(sender.endpoint, timeout=5)
    for i in range(3):
        await sender.send(frame_of(i))
    await sender.end()  # queued at the receiver, which dies before reading them
    await asyncio.sleep(0.1)
    receiver.close()
    await asyncio.sleep(0.3)  # its pipe is gone at the sender (PUSH sends to no dead peer)
    lost = sender._ring
    assert lost.busy() == 3  # nobody will ever give these slots back
    try:
        async with ImageReceiver(sender.endpoint, timeout=5) as receiver:
            task = asyncio.create_task(checksums(receiver))
            for i in range(10):  # more frames than the old ring has free slots
                await sender.send(frame_of(i))
            await sender.end()
            assert await task == [zlib.crc32(frame_of(i)) for i in range(10)]
        assert sender._ring is not lost and lost.name in sender.segments
    finally:
        sender.close(linger=0.2)  # the retired ring goes after the linger


async def checksums(receiver: ImageReceiver) -> list[int]:
    return [zlib.crc32(frame) async for frame in receiver.frames()]


async def test_segments_go_at_close_and_when_the_sender_is_collected():
    sender = ImageSender("ipc://*", shared_memory=True)
    receiver = ImageReceiver(sender.endpoint, timeout=5)
    await sender.send(frame_of(0))
    name = sender.segments[0]
    assert name in segments()
    frame = await anext(receiver.frames())
    sender.close()  # a frame still held: the segment lingers until it is dropped
    receiver.close()
    np.testing.assert_array_equal(frame, frame_of(0))  # still valid after both closed
    del frame
    gc.collect()
    deadline = time.monotonic() + 2
    while name in segments() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert name not in segments()

    sender = ImageSender("ipc://*", shared_memory=True)
    await sender.buffer(SHAPE, np.uint16)
    name = sender.segments[0]
    sender.close(linger=0)
    assert name not in segments()

    sender = ImageSender("ipc://*", shared_memory=True)
    buffer = await sender.buffer(SHAPE, np.uint16)
    name = sender.segments[0]
    del sender  # never closed
    gc.collect()
    assert name not in segments()

    buffer[...] = 1  # the mapping outlives the file


def test_a_lingering_segment_is_unlinked_at_interpreter_exit() -> None:
    # A closed sender's ring whose slot is still in use lingers in a daemon thread; when
    # the process ends first, the ring's finalizer unlinks the segment.
    script = (
        "from concert_core.dataplane.shared import SharedRing, close_rings\n"
        "ring = SharedRing(4096)\n"
        "ring.take()\n"
        "close_rings([ring], linger=60)\n"
        "print(ring.name, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).resolve().parents[1], check=True)
    name = done.stdout.strip()
    assert name.startswith("concert-")
    assert not os.path.lexists(os.path.join(SHM_DIR, name))


async def test_a_larger_frame_replaces_the_segment():
    async with (
        ImageSender("ipc://*", shared_memory=True, slots=2) as sender,
        ImageReceiver(sender.endpoint, timeout=5) as receiver,
    ):
        task = asyncio.create_task(collect(receiver))
        shapes = [SHAPE, SHAPE, (512, 512), SHAPE, (600, 700), (512, 512)]
        for i, shape in enumerate(shapes):
            await sender.send(frame_of(i, shape))
        names = list(sender.segments)
        await sender.end()
        frames = await task
        for i, (frame, shape) in enumerate(zip(frames, shapes, strict=True)):
            np.testing.assert_array_equal(frame, frame_of(i, shape))
        assert receiver.refused == 0
        # Woken by the collecting task's end, the loop's callback still holds that task
        # (and its result) until this step yields: drop our references, then yield.
        del frames, frame, task
        await asyncio.sleep(0)
        gc.collect()
        task = asyncio.create_task(collect(receiver))
        await sender.send(frame_of(9, SHAPE))  # a new stream: retired rings are swept
        assert sender.segments == names[-1:] == [sender._ring.name]
        assert sender._ring.slot_size >= 600 * 700 * 2
        await sender.end()
        assert len(await task) == 1
        assert receiver._shared.attached == names[-1:]  # mappings of removed ones dropped


async def test_mixed_small_and_shared_frames_and_a_broadcaster():
    async with (
        ImageSender("ipc://*", shared_memory=True, slots=2) as source,
        Broadcaster(source.endpoint, ["tcp://127.0.0.1:0"]) as broadcaster,
        ImageReceiver(broadcaster.reliable_endpoints[0], timeout=5) as receiver,
    ):
        frames = [frame_of(i, (8, 8) if i % 2 else SHAPE) for i in range(40)]
        forwarding = asyncio.create_task(broadcaster.run())
        task = asyncio.create_task(collect(receiver))
        for frame in frames:
            await source.send(frame)
        await source.end()
        assert await forwarding == 40
        got = await task
        assert [zlib.crc32(f) for f in got] == [zlib.crc32(f) for f in frames]
        assert not receiver._shared.attached  # forwarded as ordinary messages
        assert source._ring.busy() == 0  # the broadcaster gave every slot back


def malformed_headers(ring: SharedRing, slot: int) -> dict[str, list[bytes]]:
    """Messages whose shared-memory reference must be refused (``slot`` is in use)."""

    def header(index: int = 1, shape=SHAPE, **shm) -> bytes:
        ref = {"segment": ring.name, "offset": ring.offset(slot), "size": 2 * SHAPE[0] * SHAPE[1]}
        ref.update(shm)
        fields = {"dtype": "<u2", "shape": list(shape), "index": index, "metadata": {},
                  "shm": ref}
        return json.dumps(fields).encode()

    free = ring.slots - 1  # never taken here: the sender's search goes on from its cursor
    other = f"concert-{os.getpid()}-{'0' * 16}"
    return {
        "bad name": [header(segment="x")],
        "path traversal": [header(segment="../../etc/passwd")],
        "traversal with the prefix": [header(segment=f"{ring.name}/../{ring.name}")],
        "absolute path": [header(segment=f"{SHM_DIR}/{ring.name}")],
        "name not a string": [header(segment=7)],
        "nonexistent segment": [header(segment=other)],
        "offset beyond the segment": [header(offset=ring.size)],
        "offset in the control area": [header(offset=0)],
        "offset not a slot start": [header(offset=ring.offset(slot) + 2)],
        "negative offset": [header(offset=-4096)],
        "size beyond the slot": [header(size=ring.slot_size + 2, shape=[ring.slot_size // 2 + 1])],
        "size mismatch": [header(size=100)],
        "zero size": [header(size=0, shape=[0])],
        "slot not in use": [header(offset=ring.offset(free))],
        "shm not an object": [header()[:-1] + b', "shm": [1]}'],
        "shm with extra fields": [header(extra=1)],
        "a buffer part too": [header(), b"xx"],
        "out of order": [header(index=5)],
    }


async def test_malformed_shared_memory_headers_are_refused_and_counted():
    ring = SharedRing(2 * SHAPE[0] * SHAPE[1], slots=4)
    raw = zmq.asyncio.Context.instance().socket(zmq.PUSH)
    try:
        async with ImageReceiver("ipc://*", bind=True, timeout=5) as receiver:
            raw.connect(receiver.endpoint)

            async def send_valid(index: int) -> int:
                slot = ring.take()
                ring.array(slot, np.dtype(np.uint16), SHAPE[0] * SHAPE[1])[:] = index + 1
                ref = ring.ref(slot, 2 * SHAPE[0] * SHAPE[1])
                await raw.send(encode_header(np.uint16, SHAPE, index, {}, ref))
                return slot

            task = asyncio.create_task(collect(receiver))
            await send_valid(0)
            slot = ring.take()  # in use, as if sent: the target of the bad references
            bad = malformed_headers(ring, slot)
            for parts in bad.values():
                await raw.send_multipart(parts)
            await send_valid(1)
            await raw.send(encode_end(2))
            frames = await task
            assert [int(frame[0, 0]) for frame in frames] == [1, 2]
            assert receiver.refused == len(bad) and receiver.complete
            del frames, task
            await asyncio.sleep(0)
            gc.collect()
            # every valid frame gave its slot back, and so did the out-of-order one
            # (refused after its reference was resolved); the bad ones touched nothing
            assert ring.busy() == 0
            for name, parts in bad.items():
                if name != "out of order":
                    with pytest.raises(FrameError):
                        message = decode(parts)
                        SharedFrames().array(message.shm, message.dtype, message.shape)
    finally:
        raw.close(linger=0)
        ring.close()


async def test_a_long_stream_through_two_slots_into_both_walkers(tmp_path):
    count = 600
    for walker in (await DirectoryWalker(root=str(tmp_path), dsetname="f_{:>05}.tif"),
                   await HDF5Walker(str(tmp_path / "frames.h5"))):
        async with (
            ImageSender("ipc://*", shared_memory=True, slots=2, timeout=10) as sender,
            ImageReceiver(sender.endpoint, timeout=10) as receiver,
        ):
            writing = asyncio.create_task(walker.write_stream(receiver, name="long"))
            for i in range(count):
                frame = await sender.buffer(SHAPE, np.uint16)
                frame[...] = i
                await sender.send(frame, {"i": i})
            await sender.end()
            assert await writing == count
        if isinstance(walker, HDF5Walker):
            data, metadata = read_hdf5(walker.filename, "/long/frames")
            await walker.close()
            assert [m["i"] for m in metadata] == list(range(count))
            assert all(np.all(data[i] == i) for i in range(count))
        else:
            for i in (0, 299, count - 1):
                image = read_image(str(tmp_path / "long" / f"f_{i:05}.tif"))
                assert np.all(image == i) and image.metadata["i"] == i


async def test_a_camera_makes_its_frames_in_the_slots(monkeypatch):
    camera = await Camera(width=SHAPE[1], height=SHAPE[0], frame_rate=5000 / q.s,
                          exposure_time=0.1 * q.ms, seed=2)
    await camera.set_shared_memory(True)
    assert await camera.get_shared_memory() is True
    await camera.set_data_endpoint("ipc://*")
    sender = camera._data_sender
    assert sender.shared_memory
    copies = 0
    original = sender_module._copy_into

    async def counting(*args) -> None:
        nonlocal copies
        copies += 1
        await original(*args)

    monkeypatch.setattr(sender_module, "_copy_into", counting)
    try:
        async with ImageReceiver(await camera.get_data_endpoint(), timeout=5) as receiver:
            task = camera.grab_send(300)
            frames = 0
            async for frame in receiver.frames():
                assert frame.shape == SHAPE and frame.metadata["index"] == frames
                frames += 1
            await task
        assert frames == 300 and copies == 0  # every frame made in its slot
        with pytest.raises(ValueError):
            await camera.set_shared_memory("yes")
        await camera.set_shared_memory(False)
        assert not sender.shared_memory
    finally:
        await camera.set_data_endpoint("")


async def test_a_file_camera_reads_into_the_slots(tmp_path):
    for i in range(3):
        write_tiff(str(tmp_path / f"s_{i}.tif"), frame_of(i))
    camera = await FileCamera(str(tmp_path), frame_rate=1000 / q.s)
    await camera.set_shared_memory(True)
    await camera.set_data_endpoint("ipc://*")
    try:
        async with ImageReceiver(await camera.get_data_endpoint(), timeout=5) as receiver:
            task = camera.grab_send(6)
            frames = [frame async for frame in receiver.frames()]
            await task
            assert receiver._shared.attached  # they came in shared memory
        for frame in frames:
            np.testing.assert_array_equal(frame, frame_of(int(frame.metadata["file"][-5])))
    finally:
        await camera.set_data_endpoint("")


# -- through real servers ---------------------------------------------------------------------
WALKER = "test/shmwalker/1"
CAMERA = "test/shmcamera/1"
SERVER_SHAPE = (512, 384)
SOURCES = 5


@pytest.fixture(scope="module")
def servers(tango_servers, tmp_path_factory: pytest.TempPathFactory):
    """A walker server and a camera server serving random TIFF frames of 384 KiB."""
    base = tmp_path_factory.mktemp("shm_servers")
    root, source = base / "root", base / "source"
    root.mkdir()
    source.mkdir()
    sources = {}
    for i in range(SOURCES):
        name = str(source / f"src_{i:02}.tif")
        sources[name] = frame_of(100 + i, SERVER_SHAPE)
        write_tiff(name, sources[name])
    tango_servers.start_all(prepare_walker_and_camera(
        tango_servers, "shmtest", WALKER, CAMERA, root, source, stream_timeout="10 s",
        frame_rate="5000 / s"))
    yield root, sources, tango.DeviceProxy(WALKER), tango.DeviceProxy(CAMERA)


@pytest.mark.tango
@pytest.mark.parametrize("writer_class", ["TIFF", "HDF5"])
def test_camera_server_to_walker_server_in_shared_memory(servers, writer_class) -> None:
    _, sources, walker, camera = servers
    config = camera.get_attribute_config("shared_memory")
    assert config.data_type == tango.DevBoolean
    assert config.writable == tango.AttrWriteType.READ_WRITE
    camera.write_attribute("shared_memory", True)
    assert camera.read_attribute("shared_memory").value is True
    camera.write_attribute("data_endpoint", "ipc://*")
    endpoint = camera.read_attribute("data_endpoint").value
    walker.Home()
    walker.write_attribute("writer_class", ["TIFF", "HDF5"].index(writer_class))
    walker.write_attribute("dsetname", "frame_{:>06}.tif")
    walker.Descend(f"shm_{writer_class}")
    count = 400
    walker.WriteSequence(endpoint)
    camera.GrabSend(count)
    deadline = time.monotonic() + 60
    while walker.state() == tango.DevState.RUNNING:
        assert time.monotonic() < deadline, "the walker is still writing"
        time.sleep(0.05)
    assert walker.state() == tango.DevState.ON, walker.status()
    assert walker.read_attribute("frames_written").value == count
    assert walker.read_attribute("errors").value == 0
    here = Path(walker.read_attribute("current").value)
    if writer_class == "HDF5":
        frames, metadata = read_hdf5(str(here / "frame.h5"), "frame")
    else:
        names = sorted(here.glob("frame_*.tif"))
        assert len(names) == count
        images = [read_image(str(name)) for name in names[::37]]
        frames, metadata = images, [image.metadata for image in images]
    assert len(frames) == len(metadata) > 0
    for frame, meta in zip(frames, metadata, strict=True):
        assert np.asarray(frame).tobytes() == sources[meta["file"]].tobytes()
    # the frames went through the camera server's segment, removed with its sender
    others = {name for name in os.listdir(SHM_DIR) if name.startswith("concert-")} - segments()
    assert len(others) == 1
    camera.write_attribute("shared_memory", False)
    camera.write_attribute("data_endpoint", "")
    assert not others & set(os.listdir(SHM_DIR))


# -- segments left by a killed sender --------------------------------------------------------
def make_ring_and_die(wait: bool = False) -> subprocess.Popen:
    """A process that makes a ring, prints its name, and then exits without
    unlinking it (``os._exit``, as SIGKILL would), at once or when its stdin closes."""
    code = (
        "import os, sys\n"
        "from concert_core.dataplane import SharedRing\n"
        "ring = SharedRing(4096, slots=2)\n"
        "print(ring.name, flush=True)\n"
        + ("sys.stdin.read()\n" if wait else "")
        + "os._exit(0)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)


def orphan_of_dead_process() -> tuple[str, int]:
    """The name of a segment whose process has exited, and that process's PID."""
    process = make_ring_and_die()
    name = process.stdout.readline().strip()
    process.wait(30)
    assert os.path.exists(os.path.join(SHM_DIR, name))
    return name, process.pid


needs_namespace = pytest.mark.skipif(
    not shared_module._NAMESPACE, reason="needs /proc/self/ns/pid (a segment's PID namespace)")


@needs_namespace
def test_the_next_ring_removes_the_segments_of_a_killed_sender():
    name, _ = orphan_of_dead_process()
    path = os.path.join(SHM_DIR, name)
    try:
        ring = SharedRing(4096, slots=2)
        ring.close()
        assert not os.path.exists(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@needs_namespace
def test_segments_of_running_or_foreign_processes_are_kept():
    """A running sender's segment, a segment from another PID namespace, one without a
    namespace (made elsewhere), another user's and a file that is no segment all stay."""
    running = make_ring_and_die(wait=True)
    live = running.stdout.readline().strip()
    dead_name, dead_pid = orphan_of_dead_process()
    forged: dict[str, str] = {}
    try:
        check_orphan_removal(dead_name, dead_pid, live, forged)
    finally:
        running.stdin.close()
        running.wait(30)
        for name in [*forged.values(), live, dead_name]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, name))


def check_orphan_removal(dead_name: str, dead_pid: int, live: str, forged: dict[str, str]):
    """Forge segments that must stay next to the orphan ``dead_name`` (names added to
    ``forged``), remove orphans, and check that only ``dead_name`` went."""
    with open(os.path.join(SHM_DIR, dead_name), "rb") as segment:
        header = bytearray(segment.read(64))
    for what, namespace, magic in [("foreign namespace", shared_module._NAMESPACE ^ 1, None),
                                   ("no namespace", 0, None),
                                   ("no segment", shared_module._NAMESPACE, b"NOTOURS!")]:
        data = bytearray(header)
        struct.pack_into("<I", data, 12, namespace)
        if magic is not None:
            data[:8] = magic
        forged[what] = f"concert-{dead_pid}-{os.urandom(8).hex()}"
        Path(SHM_DIR, forged[what]).write_bytes(bytes(data))
    if os.geteuid() == 0:  # root can give a copy of the orphan to another user
        forged["another user's"] = f"concert-{dead_pid}-{os.urandom(8).hex()}"
        Path(SHM_DIR, forged["another user's"]).write_bytes(bytes(header))
        os.chown(os.path.join(SHM_DIR, forged["another user's"]), 65534, 65534)
    assert shared_module.remove_orphans() == [dead_name]
    for what, name in {**forged, "running": live}.items():
        assert os.path.exists(os.path.join(SHM_DIR, name)), what
