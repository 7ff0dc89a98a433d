"""Data-plane and writer throughput with 2048x2048 uint16 frames.

Parts (each a function registered in ``PARTS``; add one by appending to it):

(a) raw pyzmq PUSH/PULL, zero-copy, over tcp loopback (the baseline); for reference
    also with the PUSH socket bound and its connection on the TCP congestion control an
    ImageSender gives its connections (``a.cc``, see ``concert_core/dataplane/tcp.py``;
    the baseline keeps the host's, which may be BBR);
(b) ImageSender -> ImageReceiver over tcp loopback with the default in-flight window
    (goal: >= 0.9 of (a)); for reference also with ``in_flight=0`` (every send waits
    until ZMQ released its buffer);
(c) raw h5py and raw tifffile writes, and HDF5Walker / DirectoryWalker writes of the
    same frames into a temporary directory;
(d) end to end through the servers: a ConcertCamera (dummy camera, 2048x2048 uint16)
    GrabSend(n) -> ConcertWalker WriteSequence -> HDF5 and TIFF, on an embedded Tango
    database started for the run (goal: >= 0.8 of min(a, c) of the same format), over
    tcp loopback and over ipc (a Unix socket, for servers on one host; (a) and (d.raw)
    run over both too), and with the camera's ``shared_memory`` on (frames in shared
    memory, only their headers over ipc; the camera makes each frame in a slot and the
    walker writes it from there); the session sends the commands and waits for the
    walker's State change events (reading State every few milliseconds costs the busy
    servers about a tenth of their speed);
(d.raw) the same work without our code, as a reference for (d): a process that makes
    every frame anew (np.copyto of a pool frame into a new array, the baseline of
    bench_camera) and sends it with raw pyzmq, zero-copy, to this process, which hands
    the received buffers to a thread writing them with raw h5py write_direct_chunk or
    tifffile (goal for (d): >= 0.8 of it too). (a) and (c) each do a part of (d)'s work
    only: one process, no frame making, no disk or no network.

Sender and receiver run in separate threads (each with its own event loop for (b)).
Every part runs ``--repeat`` times, in interleaved rounds (a, b, c, d.raw, d, then again),
and the best run of each result counts (the machine may be shared); the servers of (d)
start before the first round and serve every round. Every timed run starts right after
the VM's pending pass of free page reporting (see ``benchmarks/host.py``), every disk
run after :func:`fresh_start` (dirty pages written, that pass over, memory warmed). Each
result shows how busy the cores were and how much time the hypervisor stole
(``benchmarks/host.py``): over its own timed run for the disk runs ((c), (d), d.raw),
over its part's call for (a) and (b). A ratio names those of its results whose runs lost
more than :data:`STOLEN_LIMIT` of the cores' time that way.
Run: ``python benchmarks/bench_dataplane.py [--frames N] [--write-frames M]
[--server-frames K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tango
import tifffile
import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.host import HostLoad, after_reporting_pass, host_load
from concert_core.dataplane import ImageReceiver, ImageSender, tcp
from concert_core.dataplane.shared import DEFAULT_SLOTS
from servers.database import EmbeddedDatabase
from servers.process import ServerProcess, register_server
from walkers import DirectoryWalker, HDF5Walker

SHAPE = (2048, 2048)
DTYPE = np.uint16


@dataclass
class Result:
    key: str
    label: str
    frames: int
    nbytes: int
    seconds: float
    lost: int = 0
    #: The host's load over the timed run that gave this result, or else over the part
    #: call that gave it (with its other results).
    load: HostLoad | None = None

    @property
    def gbps(self) -> float:
        return self.nbytes / self.seconds / 1e9

    @property
    def fps(self) -> float:
        return self.frames / self.seconds


@dataclass
class Setup:
    pool: list[np.ndarray]
    frames: int
    write_frames: int
    workdir: str
    server_frames: int = 200
    repeat: int = 1
    #: The camera and walker servers of part (d), while they run.
    servers: BenchServers | None = None

    def frame(self, i: int) -> np.ndarray:
        return self.pool[i % len(self.pool)]


#: The transports (d) runs over: tcp loopback and ipc (a Unix socket: the camera and
#: walker servers on one host). ``*`` binds a free port or a fresh socket file.
TRANSPORTS = {"tcp": "tcp://127.0.0.1:*", "ipc": "ipc://*"}


#: The transports of (d): those of TRANSPORTS, and shared memory (the camera's
#: ``shared_memory`` on) with the headers over ipc.
SERVER_TRANSPORTS = {**TRANSPORTS, "shm": TRANSPORTS["ipc"]}


def _bound_pull(context: zmq.Context, transport: str, setup: Setup) -> tuple[zmq.Socket, str]:
    """A PULL socket bound on ``transport``, and the endpoint to connect to (an ipc socket
    file in the work directory, removed with it)."""
    pull = context.socket(zmq.PULL)
    if transport == "ipc":
        pull.bind(f"ipc://{tempfile.mkdtemp(dir=setup.workdir)}/pull.ipc")
    else:
        pull.bind(TRANSPORTS[transport])
    return pull, pull.getsockopt(zmq.LAST_ENDPOINT).decode()


def _suffix(transport: str) -> str:
    return "" if transport == "tcp" else f".{transport}"


def part_a_raw_zmq(setup: Setup) -> list[Result]:
    results = [_raw_zmq(setup, transport) for transport in TRANSPORTS]
    results.append(_raw_zmq(setup, "tcp", congestion=tcp.TCP_CONGESTION))
    return results


def _raw_zmq(setup: Setup, transport: str, congestion: tuple[str, ...] = ()) -> Result:
    """``congestion``: the PUSH socket binds and its connection uses that TCP congestion
    control, as an ImageSender's does (the baseline (a) with the same socket settings)."""
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.sndhwm = 100
    if congestion:
        pull = context.socket(zmq.PULL)
        pull.rcvhwm = 100
        chosen = tcp.bind(push, TRANSPORTS["tcp"], congestion)
        pull.connect(push.getsockopt(zmq.LAST_ENDPOINT).decode())
    else:
        pull, endpoint = _bound_pull(context, transport, setup)
        pull.rcvhwm = 100
        push.connect(endpoint)

    def send() -> None:
        for i in range(setup.frames):
            push.send(setup.frame(i), copy=False)

    received = 0
    nbytes = 0
    after_reporting_pass()  # as before every timed run: no pass falls into it
    start = time.perf_counter()
    thread = threading.Thread(target=send)
    thread.start()
    for _ in range(setup.frames):
        frame = pull.recv(copy=False)
        array = np.frombuffer(frame.buffer, DTYPE).reshape(SHAPE)
        received += 1
        nbytes += array.nbytes
    seconds = time.perf_counter() - start
    thread.join()
    push.close(linger=0)
    pull.close(linger=0)
    context.term()
    if congestion:
        return Result("a.cc", f"  same, PUSH bound, {chosen or 'host default'}", received,
                      nbytes, seconds, setup.frames - received)
    return Result("a" + _suffix(transport), f"raw pyzmq PUSH/PULL {transport}", received,
                  nbytes, seconds, setup.frames - received)


def part_b_image_sender(setup: Setup) -> list[Result]:
    return [
        _stream(setup, "b", "ImageSender -> ImageReceiver", None),
        _stream(setup, "b.wait", "  same, in_flight=0", 0),
    ]


def _stream(setup: Setup, key: str, label: str, in_flight: int | None) -> Result:
    """``in_flight=None``: the sender's default window."""
    ready = threading.Event()
    endpoint: list[str] = []
    options = {} if in_flight is None else {"in_flight": in_flight}

    async def send() -> None:
        async with ImageSender("tcp://127.0.0.1:0", timeout=30, **options) as sender:
            endpoint.append(sender.endpoint)
            ready.set()
            for i in range(setup.frames):
                await sender.send(setup.frame(i), {"i": i})
            await sender.end()

    async def receive() -> tuple[int, int, float, int]:
        ready.wait()
        async with ImageReceiver(endpoint[0], timeout=30) as receiver:
            start = time.perf_counter()
            nbytes = 0
            async for image in receiver.frames():
                nbytes += image.nbytes
            seconds = time.perf_counter() - start
            return receiver.received, nbytes, seconds, receiver.missed + receiver.refused

    after_reporting_pass()
    thread = threading.Thread(target=asyncio.run, args=(send(),))
    thread.start()
    received, nbytes, seconds, lost = asyncio.run(receive())
    thread.join()
    lost += setup.frames - received
    return Result(key, label, received, nbytes, seconds, lost)


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def warm_memory(nbytes: int) -> None:
    """Touch ``nbytes`` of fresh memory and release it, just before a timed disk run.

    The page cache a run writes into comes from the free pages. Pages the VM's host took
    back (see ``benchmarks/host.py``) cost a host fault on their first touch, pages just
    released are reused first: after this the run finds warm pages, whichever parts ran
    before it (at most half of the available memory is touched)."""
    available = _mem_available()
    if available is not None:
        nbytes = min(nbytes, available // 2)
    if nbytes > 0:
        buffer = np.empty(nbytes, np.uint8)
        buffer[::4096] = 1  # one write per page faults it in
        del buffer


def fresh_start(nbytes: int) -> None:
    """Prepare a timed disk run that needs ``nbytes`` of page cache: write out the dirty
    pages of earlier runs, wait for the pending pass of free page reporting (it would
    take back the warmed pages during the run), then warm that much memory."""
    os.sync()
    after_reporting_pass()
    warm_memory(nbytes)


@dataclass
class Span:
    """A timed run: its seconds, and the host's load over them."""

    seconds: float = 0.0
    load: HostLoad | None = None


@contextlib.contextmanager
def disk_run(frames: int) -> Iterator[Span]:
    """Time a disk run that writes ``frames`` frames: :func:`fresh_start` for them (and
    some headroom), then the seconds of the ``with`` block and the host's load."""
    fresh_start((frames + 16) * setup_nbytes())
    span = Span()
    with host_load() as span.load:
        start = time.perf_counter()
        yield span
        span.seconds = time.perf_counter() - start


def _timed(key: str, label: str, count: int, func: Callable[[], int]) -> Result:
    with disk_run(count) as span:
        written = func()
    return Result(key, label, written, written * setup_nbytes(), span.seconds,
                  count - written, span.load)


def setup_nbytes() -> int:
    return int(np.prod(SHAPE)) * np.dtype(DTYPE).itemsize


def part_c_writers(setup: Setup) -> list[Result]:
    count = setup.write_frames
    results = []

    def fresh(name: str) -> str:
        path = os.path.join(setup.workdir, name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def raw_h5py() -> int:
        path = fresh("raw_h5")
        with h5py.File(os.path.join(path, "raw.h5"), "w") as file:
            dataset = file.create_dataset(
                "frames", (count, *SHAPE), dtype=DTYPE, chunks=(1, *SHAPE)
            )
            for i in range(count):
                dataset[i] = setup.frame(i)
        return count

    def raw_h5py_direct() -> int:
        path = fresh("raw_h5_direct")
        with h5py.File(os.path.join(path, "raw.h5"), "w") as file:
            dataset = file.create_dataset(
                "frames", (count, *SHAPE), dtype=DTYPE, chunks=(1, *SHAPE)
            )
            for i in range(count):
                dataset.id.write_direct_chunk((i, 0, 0), setup.frame(i).data)
        return count

    def raw_tiff() -> int:
        path = fresh("raw_tif")
        for i in range(count):
            tifffile.imwrite(os.path.join(path, f"frame_{i:06}.tif"), setup.frame(i))
        return count

    async def produce():
        for i in range(count):
            yield setup.frame(i)

    def hdf5_walker() -> int:
        path = fresh("walker_h5")

        async def run() -> int:
            walker = await HDF5Walker(os.path.join(path, "walker.h5"))
            try:
                return await walker.write(produce())
            finally:
                await walker.close()

        return asyncio.run(run())

    def directory_walker() -> int:
        path = fresh("walker_tif")

        async def run() -> int:
            walker = await DirectoryWalker(root=path)
            return await walker.write(produce())

        return asyncio.run(run())

    for key, label, func in [
        ("c.h5py", "raw h5py (dataset[i] = frame)", raw_h5py),
        ("c.h5direct", "raw h5py (write_direct_chunk)", raw_h5py_direct),
        ("c.hdf5walker", "HDF5Walker", hdf5_walker),
        ("c.tifffile", "raw tifffile", raw_tiff),
        ("c.dirwalker", "DirectoryWalker", directory_walker),
    ]:
        results.append(_timed(key, label, count, func))
        shutil.rmtree(setup.workdir, ignore_errors=True)
        os.makedirs(setup.workdir, exist_ok=True)
    return results


def _raw_sender(endpoint: str, count: int, ready: Any, go: Any) -> None:
    """The sender of (d.raw), in a process of its own: a new frame per send."""
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 4096, SHAPE, dtype=DTYPE) for _ in range(8)]
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.sndhwm = 100
    push.connect(endpoint)
    ready.set()
    if not go.wait(60):
        return
    for i in range(count):
        frame = np.empty(SHAPE, DTYPE)
        np.copyto(frame, pool[i % len(pool)])
        push.send_multipart([json.dumps({"index": i}).encode(), frame], copy=False)
    push.send(b'{"end": true}')
    push.close(linger=-1)
    context.term()


def part_d_raw_pipeline(setup: Setup) -> list[Result]:
    return [_raw_pipeline(setup, fmt, key + _suffix(transport), transport)
            for transport in TRANSPORTS
            for fmt, key in (("HDF5", "d.rawh5"), ("TIFF", "d.rawtiff"))]


def _raw_pipeline(setup: Setup, fmt: str, key: str, transport: str) -> Result:
    count = setup.server_frames
    path = os.path.join(setup.workdir, f"raw_pipeline_{fmt}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    file = dataset = None
    if fmt == "HDF5":
        file = h5py.File(os.path.join(path, "raw.h5"), "w")
        dataset = file.create_dataset("frames", (count, *SHAPE), dtype=DTYPE, chunks=(1, *SHAPE))
    frames: queue.Queue = queue.Queue(16)
    written = 0
    errors: list[Exception] = []

    def write() -> None:
        nonlocal written
        while (buffer := frames.get()) is not None:
            if errors:
                continue  # drain: the receiving loop must not block
            try:
                if dataset is not None:
                    dataset.id.write_direct_chunk((written, 0, 0), buffer)
                else:
                    array = np.frombuffer(buffer, DTYPE).reshape(SHAPE)
                    tifffile.imwrite(os.path.join(path, f"frame_{written:06}.tif"), array)
                written += 1
            except Exception as error:
                errors.append(error)

    spawn = multiprocessing.get_context("spawn")
    context = zmq.Context()
    pull, endpoint = _bound_pull(context, transport, setup)
    pull.rcvhwm = 100
    pull.rcvtimeo = 30_000  # a dead sender: zmq.Again instead of a hang
    ready, go = spawn.Event(), spawn.Event()
    sender = spawn.Process(target=_raw_sender, args=(endpoint, count, ready, go))
    sender.start()
    writer = threading.Thread(target=write)
    writer.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the raw sender did not start")
        with disk_run(count) as span:
            go.set()
            while len(parts := pull.recv_multipart(copy=False)) == 2:
                frames.put(parts[1].buffer)
            frames.put(None)
            writer.join()
            if file is not None:
                file.close()
        if errors:
            raise errors[0]
    finally:
        if writer.is_alive():
            frames.put(None)
            writer.join()
        if file is not None and file.id.valid:
            file.close()
        sender.join(10)
        if sender.is_alive():  # failed before or while sending
            sender.kill()
            sender.join()
        pull.close(linger=0)
        context.term()
        shutil.rmtree(path, ignore_errors=True)
    label = f"raw pyzmq {transport} -> {'h5py' if file is not None else 'tifffile'}"
    return Result(key, label, written, written * setup_nbytes(), span.seconds,
                  count - written, span.load)


BENCH_WALKER = "bench/walker/1"
BENCH_CAMERA = "bench/camera/1"


def _restore_environment(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


#: Seconds a run of (d) may take from GrabSend until the walker is back from RUNNING.
RUN_TIMEOUT = 120.0


class StateEvents:
    """The States a device announces by change events, to wait for the end of a command
    without reading State: a read every few milliseconds costs the server, and the run
    it serves, a tenth of its speed (both cores are busy with the camera and the
    walker); a client such as ophyd-async waits for events too."""

    def __init__(self, device: tango.DeviceProxy) -> None:
        self._device = device
        self._seen: list[tango.DevState] = []
        self._changed = threading.Condition()
        self._subscription = device.subscribe_event(
            "State", tango.EventType.CHANGE_EVENT, self._on_event)

    def _on_event(self, event: tango.EventData) -> None:
        if event.err or event.attr_value is None:
            return
        with self._changed:
            self._seen.append(event.attr_value.value)
            self._changed.notify_all()

    def forget(self) -> None:
        """Forget the States seen so far (call before the command to wait for)."""
        with self._changed:
            self._seen.clear()

    def wait_left(self, state: tango.DevState, timeout: float) -> bool:
        """Wait until the device announced ``state`` and then another one, since
        :meth:`forget`; False if that took longer than ``timeout`` seconds."""
        def left() -> bool:
            return state in self._seen and self._seen[-1] != state

        with self._changed:
            return self._changed.wait_for(left, timeout)

    def close(self) -> None:
        self._device.unsubscribe_event(self._subscription)


class BenchServers:
    """A ConcertCamera and a ConcertWalker server on an embedded Tango database, started
    before the first round and stopped after the last, so that every round of (d) runs
    between the other parts' rounds, as theirs do. Entering also runs the warm-up
    sequences (camera plans, noise banks, the first files) of every transport and
    format."""

    def __init__(self, setup: Setup) -> None:
        self.root = os.path.join(setup.workdir, "walker_root")
        self._stack = contextlib.ExitStack()  # undoes the start, in reverse order
        self.walker: tango.DeviceProxy | None = None
        self.camera: tango.DeviceProxy | None = None
        self._walker_states: StateEvents | None = None
        self.endpoint = ""  # where the camera sends its frames

    def __enter__(self) -> BenchServers:
        try:
            self._start(self._stack)
            for transport in SERVER_TRANSPORTS:
                self.connect(transport)
                for fmt in FORMATS:
                    self.warm_up(fmt, f"warmup_{fmt}_{transport}", 3)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, stack: contextlib.ExitStack) -> None:
        previous = os.environ.get("TANGO_HOST")
        stack.callback(_restore_environment, "TANGO_HOST", previous)
        state_dir = tempfile.mkdtemp(prefix="bench_tango_db_")
        stack.callback(shutil.rmtree, state_dir, ignore_errors=True)
        db = stack.enter_context(EmbeddedDatabase(Path(state_dir)))
        os.environ["TANGO_HOST"] = db.tango_host  # the clients' events need it
        camera_args = {"width": SHAPE[1], "height": SHAPE[0], "dtype": "uint16",
                       "exposure_time": "10 us", "frame_rate": "1000000 / s"}
        database = db.database()
        register_server(database, "ConcertWalker", "bench", "DirectoryWalker",
                        [BENCH_WALKER], {BENCH_WALKER: {"root": [self.root]}})
        register_server(database, "ConcertCamera", "bench", "Camera", [BENCH_CAMERA],
                        {BENCH_CAMERA: {"concert_args": [json.dumps(camera_args)]}})
        for server, device in (("ConcertWalker", BENCH_WALKER),
                               ("ConcertCamera", BENCH_CAMERA)):
            process = ServerProcess(
                [sys.executable, "-m", "servers.main", server, "bench"], db.tango_host,
                [device], Path(state_dir) / f"{server}.log", timeout=60)
            stack.callback(process.stop)
            process.start()
        self.walker = tango.DeviceProxy(BENCH_WALKER)
        self.camera = tango.DeviceProxy(BENCH_CAMERA)
        self.walker.write_attribute("stream_timeout", 30.0)
        self._walker_states = StateEvents(self.walker)
        stack.callback(self._walker_states.close)

    def __exit__(self, *exc: object) -> None:
        self.walker = self.camera = self._walker_states = None
        self._stack.close()

    def connect(self, transport: str) -> None:
        """Have the camera send over ``transport`` (a new sender: with ``shm``, a new
        ring of shared memory)."""
        assert self.camera is not None, "servers not started"
        self.camera.write_attribute("shared_memory", transport == "shm")
        self.camera.write_attribute("data_endpoint", SERVER_TRANSPORTS[transport])
        self.endpoint = self.camera.read_attribute("data_endpoint").value

    def warm_up(self, fmt: str, name: str, count: int) -> None:
        """An untimed :meth:`run`; a frame lost in it fails the benchmark."""
        written, _ = self.run(fmt, name, count)
        if written != count:
            raise RuntimeError(f"untimed run {name!r}: {written} of {count} frames written")

    def run(self, fmt: str, name: str, count: int) -> tuple[int, Span]:
        """Camera -> walker -> ``fmt`` files in directory ``name``: frames written, and
        the span from GrabSend until the walker announces its end (every file closed)."""
        walker, camera, states = self.walker, self.camera, self._walker_states
        assert walker is not None and camera is not None and states is not None, \
            "servers not started"
        walker.Home()
        walker.write_attribute("writer_class", ["TIFF", "HDF5"].index(fmt))
        walker.write_attribute("dsetname", "frame_{:>06}.tif")
        walker.Descend(name)
        states.forget()
        walker.WriteSequence(self.endpoint)
        with disk_run(count) as span:
            camera.GrabSend(count)
            ended = states.wait_left(tango.DevState.RUNNING, RUN_TIMEOUT)
        if not ended:
            raise RuntimeError(f"walker still {walker.state()} after {RUN_TIMEOUT:g} s: "
                               f"{walker.status()}")
        if walker.state() != tango.DevState.ON:
            raise RuntimeError(f"walker ended in {walker.state()}: {walker.status()}")
        while camera.state() == tango.DevState.RUNNING:
            time.sleep(0.005)
        written = walker.read_attribute("frames_written").value
        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
        return written, span


#: (d)'s formats and the keys of their results.
FORMATS = {"HDF5": "d.hdf5", "TIFF": "d.tiff"}


def part_d_servers(setup: Setup) -> list[Result]:
    """One round of camera server -> walker server -> disk on ``setup.servers``: every
    transport, HDF5 then TIFF; the session only sends commands. Each transport gets a new
    sender, and its first frames (an untimed run through every slot of a new ring) pay
    for its new sockets and memory, as a beamline's camera server does once, not at
    every acquisition. Each result carries the host's load over its own timed run."""
    servers = setup.servers
    if servers is None:
        raise RuntimeError("part (d) needs the servers: run it inside BenchServers")
    count = setup.server_frames
    results = []
    for transport in SERVER_TRANSPORTS:
        how = "shm+ipc" if transport == "shm" else transport
        servers.connect(transport)
        servers.warm_up("HDF5", "first_frames", 2 * DEFAULT_SLOTS)
        for fmt, key in FORMATS.items():
            written, span = servers.run(fmt, f"run_{fmt}", count)
            results.append(Result(key + _suffix(transport),
                                  f"camera -> ConcertWalker -> {fmt} {how}", written,
                                  written * setup_nbytes(), span.seconds, count - written,
                                  span.load))
    return results


#: The benchmark's parts in order; each takes the Setup and returns Results. Every part
#: runs ``--repeat`` times, in interleaved rounds (the best run counts: the machine may be
#: shared).
PARTS: list[Callable[[Setup], list[Result]]] = [
    part_a_raw_zmq,
    part_b_image_sender,
    part_c_writers,
    part_d_raw_pipeline,
    part_d_servers,
]


def report(result: Result, note: str = "") -> None:
    print(
        f"  {result.key:<13} {result.label:<34} {result.frames:5d} frames "
        f"{result.seconds:7.2f} s {result.gbps:6.2f} GB/s {result.fps:8.1f} frames/s "
        f"lost {result.lost} {note}"
        + (f"  [{result.load.brief()}]" if result.load is not None else "")
    )


#: Ratios printed at the end: (label, numerator key, denominator key(s), goal or None).
RATIOS = [
    ("(b)/(a) data plane vs raw pyzmq", "b", "a", 0.9),
    ("(b)/(a, PUSH bound, same control)", "b", "a.cc", None),
    ("(b, in_flight=0)/(a)", "b.wait", "a", None),
    ("HDF5Walker / raw h5py", "c.hdf5walker", "c.h5py", None),
    ("HDF5Walker / raw h5py direct chunks", "c.hdf5walker", "c.h5direct", None),
    ("DirectoryWalker / raw tifffile", "c.dirwalker", "c.tifffile", None),
    ("(d HDF5)/min(a, raw h5py)", "d.hdf5", ("a", "c.h5py", "c.h5direct"), 0.8),
    ("(d TIFF)/min(a, raw tifffile)", "d.tiff", ("a", "c.tifffile"), 0.8),
    ("(d HDF5)/raw pipeline (same work)", "d.hdf5", "d.rawh5", 0.8),
    ("(d TIFF)/raw pipeline (same work)", "d.tiff", "d.rawtiff", 0.8),
    ("(d HDF5 ipc)/min(a, raw h5py)", "d.hdf5.ipc", ("a", "c.h5py", "c.h5direct"), 0.8),
    ("(d TIFF ipc)/min(a, raw tifffile)", "d.tiff.ipc", ("a", "c.tifffile"), 0.8),
    ("(d HDF5 ipc)/min(a ipc, raw h5py)", "d.hdf5.ipc", ("a.ipc", "c.h5py", "c.h5direct"),
     None),
    ("(d TIFF ipc)/min(a ipc, raw tifffile)", "d.tiff.ipc", ("a.ipc", "c.tifffile"), None),
    ("(d HDF5 ipc)/raw pipeline ipc", "d.hdf5.ipc", "d.rawh5.ipc", 0.8),
    ("(d TIFF ipc)/raw pipeline ipc", "d.tiff.ipc", "d.rawtiff.ipc", 0.8),
    ("(d HDF5 shm)/min(a, raw h5py)", "d.hdf5.shm", ("a", "c.h5py", "c.h5direct"), 0.8),
    ("(d TIFF shm)/min(a, raw tifffile)", "d.tiff.shm", ("a", "c.tifffile"), 0.8),
    ("(d HDF5 shm)/raw pipeline ipc", "d.hdf5.shm", "d.rawh5.ipc", None),
    ("(d TIFF shm)/raw pipeline ipc", "d.tiff.shm", "d.rawtiff.ipc", None),
]


#: A result whose run had more of the cores' time stolen than this is named next to the
#: ratios it enters: they measure the host more than the code.
STOLEN_LIMIT = 0.05


def _denominator(
    results: dict[str, Result], keys: str | tuple[str, ...]
) -> tuple[float, list[str]] | None:
    """GB/s of ``keys`` (one result, or min(a, best raw writer of the format)) and the
    keys of the results it was taken from."""
    if isinstance(keys, str):
        return (results[keys].gbps, [keys]) if keys in results else None
    stream, *writers = keys
    found = [key for key in writers if key in results]
    if stream not in results or not found:
        return None
    writer = max(found, key=lambda key: results[key].gbps)
    return min(results[stream].gbps, results[writer].gbps), [stream, writer]


def _disturbed(results: dict[str, Result], keys: list[str]) -> str:
    """``"a 21% stolen"`` for the results of ``keys`` the host stole from ("" if none)."""
    return ", ".join(
        f"{key} {results[key].load.steal:.0%} stolen"
        for key in keys
        if results[key].load is not None and results[key].load.steal > STOLEN_LIMIT
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500, help="frames streamed in (a), (b)")
    parser.add_argument("--write-frames", type=int, default=150, help="frames written in (c)")
    parser.add_argument("--server-frames", type=int, default=200,
                        help="frames per format in (d)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of every part (the best run counts)")
    parser.add_argument("--verbose", action="store_true", help="print every round")
    parser.add_argument("--dir", default=None, help="directory for (c) (default: a tmp dir)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 4096, SHAPE, dtype=DTYPE) for _ in range(8)]
    workdir = tempfile.mkdtemp(prefix="bench_dataplane_", dir=args.dir)
    setup = Setup(pool, args.frames, args.write_frames, workdir, args.server_frames,
                  args.repeat)
    print(f"frames {SHAPE[0]}x{SHAPE[1]} {np.dtype(DTYPE).name} ({setup_nbytes() / 1e6:.1f} MB)")
    results: dict[str, Result] = {}
    lost = 0
    try:
        with BenchServers(setup) as setup.servers:
            for round_number in range(args.repeat):
                for part in PARTS:
                    with host_load() as load:
                        part_results = part(setup)
                    for result in part_results:
                        result.load = result.load or load
                        lost += result.lost
                        best = results.get(result.key)
                        if best is None or result.gbps > best.gbps:
                            results[result.key] = result
                        if args.verbose:
                            report(result, f"round {round_number}")
        print(f"best of {args.repeat} rounds:")
        for result in results.values():
            report(result, "best")
    finally:
        setup.servers = None
        shutil.rmtree(workdir, ignore_errors=True)
    for label, numerator, denominator, goal in RATIOS:
        base = _denominator(results, denominator)
        if numerator in results and base and base[0]:
            ratio = results[numerator].gbps / base[0]
            notes = []
            if goal is not None:
                notes.append(f"goal >= {goal:.2f}: {'met' if ratio >= goal else 'MISSED'}")
            if stolen := _disturbed(results, [numerator, *base[1]]):
                notes.append(f"host: {stolen}")
            print(f"  {label:<34} {ratio:6.3f}" + (f"  ({'; '.join(notes)})" if notes else ""))
    print("frames lost (all runs):", lost)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
