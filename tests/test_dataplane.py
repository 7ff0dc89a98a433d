"""The ZMQ data plane on real sockets over tcp loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import zlib

import numpy as np
import pytest
import zmq
import zmq.asyncio

from concert_core.dataplane import (
    Broadcaster,
    DataPlaneTimeout,
    DTypeError,
    FrameError,
    HeaderError,
    ImageReceiver,
    ImageSender,
    MetadataError,
    OrderError,
    SizeMismatchError,
    decode,
    encode_end,
    encode_header,
    resolve_endpoint,
)
from concert_core.helpers import CommData, ImageWithMetadata, SocketType
from tests.support import collect

LOOPBACK = "tcp://127.0.0.1:0"


async def test_reliable_stream_loses_nothing_and_keeps_order():
    rng = np.random.default_rng(1)
    count = 10_000
    async with ImageSender(LOOPBACK) as sender, ImageReceiver(sender.endpoint) as receiver:
        sums = []

        async def produce() -> None:
            for i in range(count):
                frame = rng.integers(0, 65535, (8, 16), dtype=np.uint16)
                sums.append(zlib.crc32(frame.tobytes()))
                await sender.send(frame, {"n": i, "tag": "flat"})
            assert await sender.end() == count

        producer = asyncio.create_task(produce())
        received = []
        async for frame in receiver.frames():
            assert isinstance(frame, ImageWithMetadata)
            assert frame.shape == (8, 16) and frame.dtype == np.uint16
            assert frame.metadata == {"n": len(received), "tag": "flat", "index": len(received)}
            received.append(zlib.crc32(frame.tobytes()))
        await producer
    assert received == sums
    assert receiver.received == count and receiver.refused == 0 and receiver.missed == 0
    assert receiver.complete and receiver.end_count == count
    assert sender.sent == count and sender.dropped == 0


async def test_metadata_dtypes_and_shapes_survive():
    frames = [
        ImageWithMetadata(np.arange(12, dtype=">f8").reshape(3, 4), {"energy": "20 keV"}),
        np.arange(70000, dtype=np.uint16).reshape(2, 35000)[:, ::2],  # not contiguous
        np.zeros((0, 5), dtype=np.int32),
        np.array(3.5 + 1j),
        np.ones((2, 2, 3), dtype=bool),
    ]
    async with ImageSender(LOOPBACK) as sender, ImageReceiver(sender.endpoint) as receiver:
        task = asyncio.create_task(collect(receiver))
        for frame in frames:
            await sender.send(frame, {"motor": np.float64(1.5), "roi": np.arange(2)})
        await sender.end()
        received = await task
    for sent, got in zip(frames, received, strict=True):
        np.testing.assert_array_equal(got, sent)
        assert got.dtype == sent.dtype
        assert got.metadata["motor"] == 1.5 and got.metadata["roi"] == [0, 1]
    assert received[0].metadata["energy"] == "20 keV"
    assert frames[0].metadata == {"energy": "20 keV"}  # the caller's metadata untouched


async def test_in_flight_0_returns_only_when_the_buffer_may_be_reused():
    frame = np.full((512, 512), 7, dtype=np.uint16)  # zero-copy path
    async with (
        ImageSender(LOOPBACK, in_flight=0) as sender,
        ImageReceiver(sender.endpoint) as receiver,
    ):
        task = asyncio.create_task(collect(receiver))
        for value in range(3):
            frame[:] = value
            await sender.send(frame)
        await sender.end()
        received = await task
    assert [int(image[0, 0]) for image in received] == [0, 1, 2]
    assert all(np.all(image == image[0, 0]) for image in received)


async def test_unsendable_frames_are_refused_before_sending():
    async with ImageSender(LOOPBACK, timeout=0.2) as sender:
        with pytest.raises(DTypeError):
            await sender.send(np.array([object()], dtype=object))
        with pytest.raises(MetadataError):
            await sender.send(np.zeros(3), {"bad": object()})
        assert sender.sent == 0 and sender.index == 0


async def test_dead_receiver_turns_into_a_timeout_at_the_sender():
    async with ImageSender(LOOPBACK, timeout=0.3, sndhwm=1) as sender:
        with pytest.raises(DataPlaneTimeout, match="could not be sent"):
            await sender.send(np.zeros((4, 4)))  # nobody ever connected
    async with ImageSender(LOOPBACK, timeout=0.3, sndhwm=1) as sender:
        receiver = ImageReceiver(sender.endpoint)
        await sender.send(np.zeros((4, 4)))
        frames = receiver.frames()
        assert (await anext(frames)).shape == (4, 4)
        await frames.aclose()
        receiver.close()  # the receiver dies mid-stream
        with pytest.raises(DataPlaneTimeout):
            # Small frames fill ZMQ's and the kernel's buffers until ZMQ's I/O thread has
            # seen the peer go (later on a loaded machine); from then on a send times out.
            for _ in range(1000):
                await sender.send(np.zeros((4, 4)))
        with pytest.raises(DataPlaneTimeout):
            await sender.end()


async def test_dead_sender_ends_with_timeout_or_cleanly():
    sender = ImageSender(LOOPBACK)
    receiver = ImageReceiver(sender.endpoint, timeout=0.3)
    for _ in range(3):
        await sender.send(np.ones(5))
    sender.close(linger=1)  # gone without an end-of-stream
    got = []
    with pytest.raises(DataPlaneTimeout, match="sender gone"):
        async for frame in receiver.frames():
            got.append(frame)
    assert len(got) == 3 and receiver.timed_out
    receiver.close()

    sender = ImageSender(LOOPBACK)
    async with ImageReceiver(sender.endpoint, timeout=0.3, on_timeout="end") as receiver:
        await sender.send(np.ones(5))
        sender.close(linger=1)
        assert len(await collect(receiver)) == 1
        assert receiver.timed_out and not receiver.complete


def raw_frame(position: int, array: np.ndarray, **header) -> list[bytes]:
    fields = {"dtype": array.dtype.str, "shape": list(array.shape), "index": position}
    fields["metadata"] = {}
    fields.update(header)
    return [json.dumps(fields).encode(), array.tobytes()]


MALFORMED = {
    "bad json": [b"{not json", b"xxxx"],
    "not utf-8": [b"\xff\xfe{}", b"xxxx"],
    "header not an object": [b"[1, 2]", b"xxxx"],
    "unknown dtype": raw_frame(1, np.zeros(2, np.uint8), dtype="uint77"),
    "object dtype": raw_frame(1, np.zeros(2, np.uint8), dtype="|O"),
    "structured dtype": raw_frame(1, np.zeros(2, np.uint8), dtype="[('a', '<i4')]"),
    "dtype missing": [json.dumps({"shape": [2], "index": 1}).encode(), b"xx"],
    "size mismatch": raw_frame(1, np.zeros(2, np.uint8), shape=[3]),
    "negative shape": raw_frame(1, np.zeros(2, np.uint8), shape=[-2]),
    "float index": raw_frame(1, np.zeros(2, np.uint8), index=1.0),
    "metadata not an object": raw_frame(1, np.zeros(2, np.uint8), metadata=[1]),
    "missing buffer": raw_frame(1, np.zeros(2, np.uint8))[:1],
    "extra part": [*raw_frame(1, np.zeros(2, np.uint8)), b"extra"],
    "empty message parts": [b"", b""],
    "out of order": raw_frame(5, np.zeros(2, np.uint8)),
    "duplicate": raw_frame(0, np.zeros(2, np.uint8)),
    "end with bad count": [json.dumps({"end": True, "count": -1}).encode()],
    "end with a buffer": [encode_end(2), b"x"],
}


async def test_malformed_messages_are_refused_counted_and_the_stream_goes_on():
    context = zmq.asyncio.Context.instance()
    async with ImageReceiver(LOOPBACK, bind=True, timeout=5) as receiver:
        raw = context.socket(zmq.PUSH)
        raw.connect(receiver.endpoint)
        try:
            task = asyncio.create_task(collect(receiver))
            await raw.send_multipart(raw_frame(0, np.arange(2, dtype=np.uint8)))
            for parts in MALFORMED.values():
                await raw.send_multipart(parts)
            await raw.send_multipart(raw_frame(1, np.arange(2, dtype=np.uint8)))
            await raw.send(encode_end(2))
            frames = await task
        finally:
            raw.close(linger=0)
    assert [frame.metadata["index"] for frame in frames] == [0, 1]
    assert receiver.refused == len(MALFORMED)
    assert receiver.received == 2 and receiver.complete


async def test_on_error_raise_raises_the_frame_error():
    async with ImageReceiver(LOOPBACK, bind=True, timeout=5, on_error="raise") as receiver:
        raw = zmq.asyncio.Context.instance().socket(zmq.PUSH)
        raw.connect(receiver.endpoint)
        try:
            await raw.send_multipart(MALFORMED["size mismatch"])
            with pytest.raises(SizeMismatchError):
                await collect(receiver)
        finally:
            raw.close(linger=0)
    assert receiver.refused == 1


def test_decode_checks_every_field():
    header = encode_header("<u2", (2, 2), 0, {"a": 1})
    frame = decode([header, np.zeros((2, 2), np.uint16).tobytes()], expected_index=0)
    assert frame.shape == (2, 2) and frame.metadata == {"a": 1}
    with pytest.raises(OrderError):
        decode([header, bytes(8)], expected_index=1)
    with pytest.raises(HeaderError):
        decode([b"{}" * (1 << 20), b""])
    for name, parts in MALFORMED.items():
        if name not in ("out of order", "duplicate"):
            with pytest.raises(FrameError):
                decode(parts, expected_index=1)


async def test_live_destinations_drop_while_the_reliable_one_gets_everything():
    count = 300
    frame = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
    async with (
        ImageSender(LOOPBACK) as source,
        Broadcaster(source.endpoint, [LOOPBACK], [LOOPBACK]) as broadcaster,
        ImageReceiver(broadcaster.reliable_endpoints[0]) as reliable,
        ImageReceiver(broadcaster.live_endpoints[0], reliable=False, timeout=3) as live,
    ):
        await asyncio.sleep(0.2)  # let the subscription reach the PUB socket
        slow = True

        async def view() -> int:
            seen = 0
            async for _ in live.frames():
                seen += 1
                if slow:
                    await asyncio.sleep(0.02)
            return seen

        async def produce() -> None:
            for i in range(count):
                await source.send(frame, {"i": i})
            await source.end()

        viewer = asyncio.create_task(view())
        forwarding = asyncio.create_task(broadcaster.run())
        producer = asyncio.create_task(produce())
        sums = [zlib.crc32(image.tobytes()) async for image in reliable.frames()]
        assert await forwarding == count
        await producer
        slow = False
        seen = await viewer
    assert len(sums) == count and reliable.complete
    assert set(sums) == {zlib.crc32(frame.tobytes())}
    assert broadcaster.dropped[0] > 0
    assert seen < count and live.received == seen
    assert live.received + live.missed == count  # every drop accounted for


async def test_live_sender_counts_drops_under_a_slow_consumer():
    async with (
        ImageSender(LOOPBACK, reliable=False, sndhwm=1) as sender,
        ImageReceiver(sender.endpoint, reliable=False, rcvhwm=1),
    ):
        await asyncio.sleep(0.2)  # nobody reads: the queues fill up
        frame = np.zeros((256, 256), np.uint16)
        results = [await sender.send(frame) for _ in range(200)]
        assert sender.dropped == results.count(False) > 0
        assert sender.sent + sender.dropped == 200


async def test_in_flight_window_delivers_everything_in_order_and_flushes():
    frames = [np.full((256, 256), i, np.uint16) for i in range(2000)]
    async with ImageSender(LOOPBACK) as sender, ImageReceiver(sender.endpoint) as receiver:
        assert sender.in_flight == 4  # the default window
        task = asyncio.create_task(collect(receiver))
        for frame in frames:
            await sender.send(frame)
            assert len(sender._pending) <= 4
        await sender.flush()
        assert not sender._pending
        assert all(frame.flags.writeable for frame in frames)  # every guard lifted
        await sender.end()
        received = await task
    assert [int(image[0, 0]) for image in received] == list(range(2000))
    assert all(np.all(image == i) for i, image in enumerate(received))


def stalled() -> contextlib.AbstractAsyncContextManager:
    """A sender and a receiver over ipc that reads nothing yet (a queue of one frame):
    once one frame is stuck, every further zero-copy frame stays in ZMQ's queue."""

    @contextlib.asynccontextmanager
    async def pair():
        async with (
            ImageSender("ipc://*", timeout=5) as sender,
            ImageReceiver(sender.endpoint, rcvhwm=1) as receiver,
        ):
            await asyncio.sleep(0.1)  # connected
            yield sender, receiver

    return pair()


async def send_until_held(sender: ImageSender, make) -> np.ndarray:
    """Send ``make()`` until ZMQ keeps one in flight (the receiver reads nothing)."""
    for _ in range(10):
        frame = make()
        await sender.send(frame)
        if any(entry[2] is frame for entry in sender._pending):
            return frame
    raise AssertionError("ZMQ released every frame at once")


@pytest.mark.parametrize("finish", ["flush", "end", "later sends"])
async def test_a_premature_write_into_a_frame_in_flight_raises(finish):
    async with stalled() as (sender, receiver):
        held = await send_until_held(sender, lambda: np.full((1024, 1024), 1, np.uint16))
        with pytest.raises(ValueError, match="assignment destination is read-only"):
            held[0, 0] = 2
        task = asyncio.create_task(collect(receiver))
        if finish == "flush":
            await sender.flush()
        elif finish == "later sends":
            for _ in range(sender.in_flight + 1):  # the window moves past the held frame
                await sender.send(np.zeros((512, 512), np.uint16))
        else:
            await sender.end()
        assert held.flags.writeable  # released: ours again
        held[0, 0] = 3
        if finish != "end":
            await sender.end()
        received = await task
    sent = [frame for frame in received if frame.shape == (1024, 1024)]
    assert sent and all(np.all(frame == 1) for frame in sent)  # the write came too late


async def test_an_array_in_flight_twice_is_guarded_until_both_left():
    frame = np.zeros((1024, 1024), np.uint16)
    async with stalled() as (sender, receiver):
        for _ in range(10):  # the same array, until ZMQ holds it twice
            await sender.send(frame)
            held = sum(entry[2] is frame for entry in sender._pending)
            if held >= 2:
                break
        assert held >= 2 and sender._guards[id(frame)][1] == held
        assert not frame.flags.writeable
        task = asyncio.create_task(collect(receiver))
        await sender.flush()
        assert frame.flags.writeable and not sender._guards
        await sender.end()
        await task


async def test_guarded_are_the_callers_arrays_not_read_only_or_copied_ones():
    read_only = np.ones((512, 512), np.uint16)
    read_only.flags.writeable = False
    small = np.ones((16, 16), np.uint16)  # copied into the message
    strided = np.ones((512, 1024), np.uint16)[:, ::2]  # copied: not contiguous
    async with stalled() as (sender, receiver):
        image = await send_until_held(
            sender, lambda: ImageWithMetadata(np.full((512, 512), 5, np.uint16), {"a": 1}))
        with pytest.raises(ValueError, match="read-only"):
            image[0, 0] = 1  # the ImageWithMetadata itself (not a view of it) is guarded
        for frame in (read_only, small, strided):
            await sender.send(frame)
            assert frame.flags.writeable == (frame is not read_only)
        small[0, 0] = strided[0, 0] = 7
        task = asyncio.create_task(collect(receiver))
        await sender.end()
        assert image.flags.writeable  # lifted
        assert not read_only.flags.writeable  # read-only before: stays so
        received = await task
    assert [int(frame[0, 0]) for frame in received[-4:]] == [5, 1, 1, 1]
    assert received[-4].metadata["a"] == 1


def test_endpoints_from_commdata():
    data = CommData("localhost", 5555, socket_type=SocketType.PUSH)
    assert resolve_endpoint(data, bind=True) == "tcp://127.0.0.1:5555"
    assert resolve_endpoint(data, bind=False) == "tcp://localhost:5555"
    assert resolve_endpoint("tcp://localhost:0", bind=True) == "tcp://127.0.0.1:*"
    assert resolve_endpoint("ipc:///tmp/x", bind=True) == "ipc:///tmp/x"
    with pytest.raises(ValueError):
        resolve_endpoint("nonsense", bind=True)


async def test_wildcard_ipc_binds_in_the_temporary_directory(tmp_path, monkeypatch):
    """Not in the working directory (libzmq's fallback), and nothing left after close."""
    work, temporary = tmp_path / "work", tmp_path / "temporary"
    work.mkdir()
    temporary.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    for name in ("TMPDIR", "TEMPDIR", "TMP"):
        monkeypatch.delenv(name, raising=False)
    async with ImageSender("ipc://*", timeout=5) as sender:
        path = sender.endpoint.removeprefix("ipc://")
        assert os.path.dirname(path) == str(temporary)
        assert os.path.basename(path).startswith(f"concert-{os.getpid()}-")
        async with ImageReceiver(sender.endpoint, timeout=5) as receiver:
            task = asyncio.create_task(collect(receiver))
            await sender.send(np.arange(6, dtype=np.uint16).reshape(2, 3))
            await sender.end()
            received = await task
        assert received[0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert not os.path.exists(path)
    assert list(work.iterdir()) == []


async def test_sender_takes_commdata():
    async with ImageSender(CommData(None)) as sender:
        assert sender.endpoint.startswith("tcp://127.0.0.1:")
        port = int(sender.endpoint.rsplit(":", 1)[1])
        async with ImageReceiver(CommData("127.0.0.1", port)) as receiver:
            task = asyncio.create_task(collect(receiver))
            await sender.send(np.ones(3))
            await sender.end()
            assert len(await task) == 1
