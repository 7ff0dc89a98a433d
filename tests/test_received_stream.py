"""A received stream read and written in one worker thread
(:meth:`ImageReceiver.stream`, ``frames_blocking`` and the writers' use of it): real ZMQ
sockets, real shared memory, real HDF5 and TIFF files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import zlib
from collections.abc import AsyncIterator

import numpy as np
import pytest
import zmq
import zmq.asyncio

from concert_core.dataplane import (
    DataPlaneError,
    DataPlaneTimeout,
    ImageReceiver,
    ImageSender,
    ReceivedStream,
    SizeMismatchError,
)
from concert_core.dataplane import receiver as receiver_module
from concert_core.dataplane.shared import SHM_DIR
from concert_core.helpers import ImageWithMetadata
from tests.support import collect
from tests.test_dataplane import MALFORMED, raw_frame
from walkers import DirectoryWalker, HDF5Walker, StorageError, read_hdf5, read_tiff

LOOPBACK = "tcp://127.0.0.1:0"


def frames(count: int, shape: tuple[int, int] = (256, 256)) -> list[ImageWithMetadata]:
    rng = np.random.default_rng(count)
    return [ImageWithMetadata(rng.integers(0, 4096, shape, dtype=np.uint16), {"n": i})
            for i in range(count)]


def writer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "writer"]


def leftovers(path) -> list[str]:
    return [name for _, _, files in os.walk(path) for name in files if name.endswith(".part")]


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[ImageSender, ImageReceiver]]:
    """A sender on loopback and a receiver connected to it that waits forever."""
    async with (
        ImageSender(LOOPBACK) as sender,
        ImageReceiver(sender.endpoint, timeout=None) as receiver,
    ):
        yield sender, receiver


def read_by_thread(receiver: ImageReceiver) -> bool:
    return isinstance(receiver._reader, threading.Thread)


def read_by_loop(receiver: ImageReceiver) -> bool:
    """Whether frames() waits on the receiver's socket."""
    return isinstance(receiver._reader, asyncio.AbstractEventLoop)


async def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("shared", [False, True])
async def test_a_stream_is_written_in_the_writers_thread_whole_and_in_order(tmp_path, shared):
    if shared and not os.path.isdir(SHM_DIR):
        pytest.skip("needs /dev/shm")
    data = frames(300)
    async with (
        ImageSender("ipc://*" if shared else LOOPBACK, shared_memory=shared) as sender,
        ImageReceiver(sender.endpoint, timeout=10) as receiver,
    ):
        walker = await HDF5Walker(str(tmp_path / "s.h5"))
        writing = asyncio.create_task(walker.write_stream(receiver, dsetname="seq"))
        for frame in data:
            await sender.send(frame)
        await sender.end()
        assert await writing == 300
        assert receiver.complete and receiver.refused == 0
        if shared:  # every slot went back once its frame was written
            await wait_for(lambda: sender._ring.busy() == 0)
        await walker.close()
    assert walker.frames_written == 300 and walker.bytes_written == 300 * data[0].nbytes
    stack, metadata = read_hdf5(str(tmp_path / "s.h5"), "seq")
    assert [zlib.crc32(image) for image in stack] == [zlib.crc32(frame) for frame in data]
    assert [entry["n"] for entry in metadata] == list(range(300))
    assert [entry["index"] for entry in metadata] == list(range(300))
    await wait_for(lambda: not writer_threads(), 2)  # the thread ends right after its result


async def test_a_received_stream_also_iterates_asynchronously():
    data = frames(5, (4, 4))
    async with (
        ImageSender(LOOPBACK) as sender,
        ImageReceiver(sender.endpoint, timeout=5) as receiver,
    ):
        stream = receiver.stream()
        assert isinstance(stream, ReceivedStream)
        for frame in data:
            await sender.send(frame)
        await sender.end()
        got = [frame async for frame in stream]
    assert [frame.metadata["n"] for frame in got] == list(range(5))


async def test_malformed_messages_are_refused_and_counted_by_the_thread(tmp_path):
    context = zmq.asyncio.Context.instance()
    async with ImageReceiver(LOOPBACK, bind=True, timeout=5) as receiver:
        raw = context.socket(zmq.PUSH)
        raw.connect(receiver.endpoint)
        try:
            walker = await DirectoryWalker(root=str(tmp_path), dsetname="f_{:>02}.tif")
            writing = asyncio.create_task(walker.write_stream(receiver))
            square = np.arange(4, dtype=np.uint16).reshape(2, 2)
            await raw.send_multipart(raw_frame(0, square))
            for parts in MALFORMED.values():
                await raw.send_multipart(parts)
            await raw.send_multipart(raw_frame(1, square + 10))
            await raw.send(b'{"end": true, "count": 2}')
            assert await writing == 2
        finally:
            raw.close(linger=0)
    assert receiver.refused == len(MALFORMED) and receiver.complete
    assert sorted(os.listdir(tmp_path)) == ["f_00.tif", "f_01.tif"]
    np.testing.assert_array_equal(read_tiff(str(tmp_path / "f_01.tif")), square + 10)


async def test_on_error_raise_fails_the_sequence_and_leaves_nothing(tmp_path):
    context = zmq.asyncio.Context.instance()
    async with ImageReceiver(LOOPBACK, bind=True, timeout=5, on_error="raise") as receiver:
        raw = context.socket(zmq.PUSH)
        raw.connect(receiver.endpoint)
        try:
            walker = await HDF5Walker(str(tmp_path / "s.h5"))
            writing = asyncio.create_task(walker.write_stream(receiver, dsetname="seq"))
            await raw.send_multipart(raw_frame(0, np.arange(4, dtype=np.uint16)))
            await raw.send_multipart(MALFORMED["size mismatch"])
            with pytest.raises(SizeMismatchError):
                await writing
            await walker.close()
        finally:
            raw.close(linger=0)
    assert read_hdf5_names(tmp_path / "s.h5") == []
    await wait_for(lambda: not writer_threads(), 2)  # the thread ends right after its result


def read_hdf5_names(path) -> list[str]:
    import h5py

    with h5py.File(path, "r") as file:
        return list(file)


async def test_a_dead_sender_times_out_in_the_thread_and_the_file_goes(tmp_path):
    sender = ImageSender(LOOPBACK)
    receiver = ImageReceiver(sender.endpoint, timeout=0.3)
    walker = await DirectoryWalker(root=str(tmp_path), bytes_per_file=1 << 30)
    writing = asyncio.create_task(walker.write_stream(receiver, dsetname="multi.tif"))
    for frame in frames(3, (8, 8)):
        await sender.send(frame)
    sender.close(linger=1)  # gone without an end-of-stream
    began = time.monotonic()
    with pytest.raises(DataPlaneTimeout, match="sender gone"):
        await writing
    assert time.monotonic() - began < 3
    assert receiver.timed_out and receiver.stream_received == 3
    assert os.listdir(tmp_path) == []  # the multi-page file was not published
    receiver.close()


async def test_on_timeout_end_publishes_what_came(tmp_path):
    sender = ImageSender(LOOPBACK)
    async with ImageReceiver(sender.endpoint, timeout=0.3, on_timeout="end") as receiver:
        walker = await HDF5Walker(str(tmp_path / "s.h5"))
        writing = asyncio.create_task(walker.write_stream(receiver, dsetname="seq"))
        for frame in frames(4, (8, 8)):
            await sender.send(frame)
        sender.close(linger=1)
        assert await writing == 4
        await walker.close()
    assert receiver.timed_out and not receiver.complete
    assert read_hdf5(str(tmp_path / "s.h5"), "seq")[0].shape == (4, 8, 8)


async def test_cancelling_stops_the_thread_soon_and_aborts_the_file(tmp_path):
    async with connected() as (sender, receiver):
        walker = await HDF5Walker(str(tmp_path / "s.h5"))
        writing = asyncio.create_task(walker.write_stream(receiver, dsetname="seq"))
        for frame in frames(3, (8, 8)):
            await sender.send(frame)
        await wait_for(lambda: walker.frames_written == 3)
        began = time.monotonic()
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        assert time.monotonic() - began < 1 + receiver_module.STOP_POLL
        await wait_for(lambda: not writer_threads(), 2)  # the thread ends right after its result
        await walker.close()
    assert read_hdf5_names(tmp_path / "s.h5") == []
    assert leftovers(tmp_path) == []


async def test_counts_of_written_frames_reach_the_loop_while_the_stream_pauses(tmp_path):
    """Counts are handed over in batches while frames wait; a pause hands over the rest."""
    data = frames(40, (64, 64))
    written: list[int] = []
    threads: set[threading.Thread] = set()
    async with (
        ImageSender(LOOPBACK) as sender,
        ImageReceiver(sender.endpoint, timeout=10) as receiver,
    ):
        walker = await DirectoryWalker(root=str(tmp_path), bytes_per_file=1 << 30)
        count = walker._count

        def counted(nbytes: int) -> None:
            threads.add(threading.current_thread())
            written.append(nbytes)
            count(nbytes)

        walker._count = counted
        writing = asyncio.create_task(walker.write_stream(receiver, dsetname="m.tif"))
        for frame in data[:30]:  # a burst: the thread finds frames waiting
            await sender.send(frame)
        await wait_for(lambda: walker.frames_written == 30, timeout=2)  # then a pause
        await asyncio.sleep(0.1)
        assert walker.frames_written == 30
        for frame in data[30:]:
            await sender.send(frame)
        await sender.end()
        assert await writing == 40
    assert written == [data[0].nbytes] * 40
    assert threads == {threading.main_thread()}  # on the loop, not in the writer's thread
    stack = read_tiff(str(tmp_path / "m.tif"))
    np.testing.assert_array_equal(stack[39], data[39])


async def test_a_failing_write_raises_to_the_caller_and_frees_the_slots(tmp_path):
    if not os.path.isdir(SHM_DIR):
        pytest.skip("needs /dev/shm")
    async with (
        ImageSender("ipc://*", shared_memory=True) as sender,
        ImageReceiver(sender.endpoint, timeout=5) as receiver,
    ):
        walker = await HDF5Walker(str(tmp_path / "s.h5"))
        writing = asyncio.create_task(walker.write_stream(receiver, dsetname="seq"))
        await sender.send(frames(1)[0])
        await sender.send(frames(1, (128, 512))[0])  # another shape: the sink refuses it
        with pytest.raises(StorageError, match="holds uint16"):
            await writing
        await wait_for(lambda: sender._ring.busy() == 0)
        await walker.close()
    assert read_hdf5_names(tmp_path / "s.h5") == []


async def test_blocking_reading_in_a_plain_thread_stops_on_its_event():
    async with connected() as (sender, receiver):
        stop = threading.Event()
        idle = threading.Event()
        got: list[int] = []

        def read() -> None:
            for frame in receiver.stream().frames_blocking(stop, idle.set):
                got.append(frame.metadata["index"])

        thread = threading.Thread(target=read)
        thread.start()
        for frame in frames(2, (4, 4)):
            await sender.send(frame)
        await wait_for(lambda: len(got) == 2)
        assert idle.is_set()  # told that it was about to wait
        stop.set()
        await asyncio.to_thread(thread.join, 2)
        assert not thread.is_alive() and got == [0, 1]
        assert receiver.end_count is None  # stopped, not ended


async def test_closing_the_receiver_while_a_thread_reads_it_fails_the_write_cleanly(tmp_path):
    async with ImageSender(LOOPBACK) as sender:
        receiver = ImageReceiver(sender.endpoint, timeout=None)
        walker = await HDF5Walker(str(tmp_path / "s.h5"))
        writing = asyncio.create_task(walker.write_stream(receiver, dsetname="seq"))
        for frame in frames(2, (8, 8)):
            await sender.send(frame)
        await wait_for(lambda: walker.frames_written == 2)
        receiver.close()  # the thread closes the socket, not this one
        assert receiver.closed and not receiver._socket.closed
        with pytest.raises(DataPlaneError, match="closed while read"):
            await writing
        await wait_for(lambda: receiver._socket.closed)
        await walker.close()
    assert read_hdf5_names(tmp_path / "s.h5") == []


async def test_a_receiver_read_by_a_thread_refuses_other_readers():
    async with connected() as (sender, receiver):
        stop = threading.Event()
        reading = receiver.stream().frames_blocking(stop)
        thread = threading.Thread(target=lambda: list(reading))
        thread.start()
        await wait_for(lambda: read_by_thread(receiver))
        await sender.send(frames(1, (4, 4))[0])
        await wait_for(lambda: receiver.stream_received == 1)
        with pytest.raises(DataPlaneError, match="read by a thread"):
            await anext(receiver.frames())
        with pytest.raises(DataPlaneError, match="read by a thread"):
            next(receiver.stream().frames_blocking(threading.Event()))
        assert receiver.stream_received == 1 and receiver._expected == 1  # not reset
        stop.set()
        await asyncio.to_thread(thread.join, 2)
        assert not thread.is_alive() and not read_by_thread(receiver)
        sender.restart()  # a new stream, free again: the loop may read it
        await sender.send(frames(1, (4, 4))[0])
        await sender.end()
        assert len([frame async for frame in receiver.frames()]) == 1


async def test_frames_waiting_on_the_socket_refuses_other_readers():
    async with connected() as (sender, receiver):
        reading = asyncio.create_task(collect(receiver))
        await wait_for(lambda: read_by_loop(receiver))
        with pytest.raises(DataPlaneError, match="read by frames"):
            next(receiver.stream().frames_blocking(threading.Event()))
        with pytest.raises(DataPlaneError, match="read by frames"):
            await anext(receiver.frames())
        assert read_by_loop(receiver) and not read_by_thread(receiver)
        for frame in frames(3, (4, 4)):
            await sender.send(frame)
        await sender.end()
        assert [frame.metadata["index"] for frame in await reading] == [0, 1, 2]
        assert receiver.complete and not read_by_loop(receiver)


async def test_frames_suspended_at_a_frame_holds_nothing_and_stops_once_overtaken():
    async with connected() as (sender, receiver):
        sent = frames(3, (4, 4))
        await sender.send(sent[0])
        first = receiver.frames()
        assert (await anext(first)).metadata["index"] == 0
        assert not read_by_loop(receiver)  # suspended at the frame: the socket is free
        sender.restart()  # a new stream, read by a thread while `first` is suspended
        for frame in sent[1:]:
            await sender.send(frame)
        await sender.end()
        stream = receiver.stream().frames_blocking(threading.Event())
        got = await asyncio.to_thread(list, stream)
        assert [frame.metadata["n"] for frame in got] == [1, 2] and receiver.complete
        with pytest.raises(DataPlaneError, match="another reader began a stream"):
            await anext(first)
        assert receiver.stream_received == 2 and receiver.end_count == 2  # left alone
        assert not read_by_loop(receiver) and not read_by_thread(receiver)


async def test_a_dropped_frames_generator_leaves_the_receiver_free():
    async with connected() as (sender, receiver):
        for frame in frames(2, (4, 4)):
            await sender.send(frame)
        async for _frame in receiver.frames():
            break  # not closed yet: the loop closes the generator later
        assert not read_by_loop(receiver)
        sender.restart()
        await sender.send(frames(1, (4, 4))[0])
        await sender.end()
        # the next stream starts at once (its first message is the old stream's frame 1,
        # refused as out of order; then frame 0 of the new one)
        got = await collect(receiver)
        assert [frame.metadata["index"] for frame in got] == [0] and receiver.refused == 1


async def test_closing_or_cancelling_frames_while_it_waits():
    async with ImageSender(LOOPBACK) as sender:
        receiver = ImageReceiver(sender.endpoint, timeout=None)
        reading = asyncio.create_task(collect(receiver))
        await wait_for(lambda: read_by_loop(receiver))
        reading.cancel()  # a real cancellation stays one
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert not read_by_loop(receiver)
        reading = asyncio.create_task(collect(receiver))
        await wait_for(lambda: read_by_loop(receiver))
        receiver.close()  # pyzmq cancels the wait: the reader fails, it is not cancelled
        with pytest.raises(DataPlaneError, match="closed while read"):
            await reading
        assert not read_by_loop(receiver) and receiver._socket.closed


async def test_close_from_another_thread_while_frames_waits_closes_on_the_loop():
    async with ImageSender(LOOPBACK) as sender:
        receiver = ImageReceiver(sender.endpoint, timeout=None)
        reading = asyncio.create_task(collect(receiver))
        await wait_for(lambda: read_by_loop(receiver))
        closing_threads: list[str] = []
        release = receiver._release

        def recording_release() -> None:
            closing_threads.append(threading.current_thread().name)
            release()

        receiver._release = recording_release
        await asyncio.to_thread(receiver.close)
        assert receiver.closed
        with pytest.raises(DataPlaneError, match="closed while read"):
            await reading
        assert closing_threads == [threading.main_thread().name]  # the loop's thread
        assert receiver._socket.closed and not read_by_loop(receiver)


async def test_frames_resumed_after_close_fails_cleanly():
    async with ImageSender(LOOPBACK) as sender:
        receiver = ImageReceiver(sender.endpoint, timeout=None)
        for frame in frames(2, (4, 4)):
            await sender.send(frame)
        reading = receiver.frames()
        assert (await anext(reading)).metadata["index"] == 0
        receiver.close()
        with pytest.raises(DataPlaneError, match="closed while read"):
            await anext(reading)
        assert receiver.stream_received == 1
