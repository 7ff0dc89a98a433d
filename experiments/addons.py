"""Addons: extra consumers attached to the acquisitions of an experiment.

An addon attaches itself when it is created and can be detached and attached again; a
second attachment of an attached addon is refused with :class:`AddonError`.

* :class:`Consumer` feeds any coroutine consumer (a viewer, a sink) with the data;
* :class:`ImageWriter` writes the frames of each acquisition through a walker, into an
  entry named after the acquisition (``scan_0001/darks/...``);
* :class:`RemoteImageWriter` has the camera send the frames straight to a remote walker
  server (camera server -> walker server over ZMQ);
* :class:`Accumulator` keeps the frames in memory;
* :class:`OnlineReconstruction` reconstructs selected slices by filtered back-projection
  while the projections arrive;
* :class:`PhaseGratingSteppingFourierProcessing` turns a grating stepping scan into
  intensity, visibility and differential phase images.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

import numpy as np

from concert_core.coroutines.base import run_in_executor
from concert_core.coroutines.sinks import Accumulate
from concert_core.errors import ConcertError
from concert_core.helpers import ImageWithMetadata
from concert_core.quantities import q
from experiments.base import (
    Acquisition,
    Experiment,
    FrameToken,
    bound_endpoint,
    jsonable,
    run_together,
)
from walkers.base import StorageError, WriterClassChanged


class AddonError(ConcertError):
    """An addon was used wrongly (attached twice, detached while not attached, ...)."""


class OnlineReconstructionError(AddonError):
    """The online reconstruction cannot work with the data it got."""


class Addon:
    """Applies extra functionality to ``acquisitions``; attaches itself on creation.

    Subclasses implement :meth:`_make_consumer` (the consumer of one acquisition, or
    ``None`` to leave it alone).
    """

    def __init__(self, acquisitions: Iterable[Acquisition]) -> None:
        self.acquisitions = list(acquisitions)
        self._consumers: dict[Acquisition, Callable] = {}
        self._attached = False
        self.attach()

    @property
    def attached(self) -> bool:
        """True while the addon is attached."""
        return self._attached

    def attach(self) -> None:
        """Attach to all acquisitions (``AddonError`` if attached already)."""
        if self.attached:
            raise AddonError(f"{type(self).__name__} is attached already; detach() it first")
        for acquisition in self.acquisitions:
            consumer = self._make_consumer(acquisition)
            if consumer is not None:
                acquisition.add_consumer(consumer)
                self._consumers[acquisition] = consumer
        self._attached = True

    def detach(self) -> None:
        """Detach from all acquisitions (``AddonError`` if not attached)."""
        if not self.attached:
            raise AddonError(f"{type(self).__name__} is not attached")
        for acquisition, consumer in self._consumers.items():
            if consumer in acquisition.consumers:
                acquisition.remove_consumer(consumer)
        self._consumers = {}
        self._attached = False

    def _make_consumer(self, acquisition: Acquisition) -> Callable | None:
        raise NotImplementedError


class Consumer(Addon):
    """Feeds the data of ``acquisitions`` to ``consumer`` (a callable taking an async
    iterator and returning an awaitable)."""

    def __init__(
        self,
        acquisitions: Iterable[Acquisition],
        consumer: Callable[[AsyncIterator[Any]], Awaitable[Any]],
    ) -> None:
        self.consumer = consumer
        super().__init__(acquisitions)

    def _make_consumer(self, acquisition: Acquisition) -> Callable:
        async def consume(producer: AsyncIterator[Any]) -> Any:
            return await self.consumer(producer)

        return consume


class ImageWriter(Addon):
    """Writes the frames of every acquisition with ``walker``: each acquisition descends to
    an entry named after it and writes one data set there (the walker's ``dsetname``).
    The walker's lock is held only while the writer is created, so other writers and the
    experiment can use the walker meanwhile."""

    def __init__(self, acquisitions: Iterable[Acquisition], walker: Any) -> None:
        self.walker = walker
        #: Frames written per acquisition name in the last run.
        self.written: dict[str, int] = {}
        super().__init__(acquisitions)

    def _make_consumer(self, acquisition: Acquisition) -> Callable:
        async def write(producer: AsyncIterator[Any]) -> int:
            async with self.walker:
                writer = await self.walker.create_writer(producer, name=acquisition.name)
            count = await writer
            self.written[acquisition.name] = count
            return count

        return write


class RemoteImageWriter(Addon):
    """Writes the frames of every acquisition of an imaging ``experiment`` with a remote
    ``walker`` (:class:`~walkers.remote.RemoteDirectoryWalker`), the frames going from the
    camera straight to the walker server: the camera sends them to its ``data_endpoint``
    (set to ``endpoint`` if empty) and the walker's ``WriteSequence`` connects there.

    While attached, the experiment's producers yield frame tokens (empty arrays with the
    frame's metadata) instead of frames, so other frame consumers (an online
    reconstruction, an accumulator) see no pixels. The metadata the experiment adds
    (rotation angle, ring current, ...) are stored as ``<acquisition>_metadata.json`` next
    to the data set, while the next acquisition starts; the experiment waits for them at
    the end of its run (:meth:`stored`). The walker stores the camera's own per-frame
    metadata with the frames.
    TIFF: one directory per acquisition, files named by ``dsetname``
    (``scan_0001/darks/frame_000000.tif``); HDF5: one file per acquisition
    (``scan_0001/darks.h5``, data set ``darks``).
    """

    def __init__(self, experiment: Any, walker: Any, endpoint: str = "tcp://127.0.0.1:0",
                 dsetname: str = "frame_{:>06}.tif") -> None:
        self.experiment = experiment
        self.walker = walker
        self.dsetname = dsetname
        self.camera = experiment._camera
        self.endpoint = endpoint
        #: Frames written per acquisition name in the last run.
        self.written: dict[str, int] = {}
        #: The experiment's metadata of every frame, per acquisition name (last run).
        self.metadata: dict[str, list[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()  # one binding of the camera's data endpoint at a time
        self._endpoint_reads = 0  # data endpoints read so far (see data_endpoint)
        self._endpoint = ""
        self._started_from: str | None = None  # of the acquisition being written, if any
        self._writer_class: str | None = None  # the walker's, as its last start showed
        #: Metadata being stored: (acquisition name, task), oldest first (see stored()).
        self._storing: list[tuple[str, asyncio.Future]] = []
        super().__init__(experiment.acquisitions)

    def attach(self) -> None:
        """Attach, and have the experiment's camera send its frames itself."""
        current = getattr(self.experiment, "direct_writer", None)
        if current is not None and current is not self:
            raise AddonError("another RemoteImageWriter is attached to this experiment")
        super().attach()
        self.experiment.direct_writer = self

    def detach(self) -> None:
        """Detach; the experiment grabs its frames again."""
        super().detach()
        if self.experiment.direct_writer is self:
            self.experiment.direct_writer = None

    async def data_endpoint(self) -> str:
        """The camera's data endpoint (bound at ``endpoint`` first if it has none).

        Callers at the same time (an acquisition's producer setting the camera up and its
        writer) share one read: who waited for another's read takes its result. While an
        acquisition is written, the endpoint its writer connected to is the answer."""
        if self._started_from is not None:
            return self._started_from
        reads = self._endpoint_reads
        async with self._lock:
            if self._endpoint_reads == reads:
                self._endpoint = await bound_endpoint(self.camera.get_data_endpoint,
                                                      self.camera.set_data_endpoint,
                                                      self.endpoint)
                self._endpoint_reads += 1
            return self._endpoint

    def _walker_name(self) -> str:
        device = getattr(self.walker, "device", None)
        return device.dev_name() if hasattr(device, "dev_name") else str(self.walker.root)

    async def _known_writer_class(self) -> str:
        if self._writer_class is None:
            self._writer_class = str(await self.walker.get_attribute("writer_class")).upper()
        return self._writer_class

    async def _start_writer(self, name: str) -> Coroutine[Any, Any, int]:
        """Have the walker write acquisition ``name`` from the camera's data endpoint; return
        the coroutine awaiting the end. The layout depends on the walker's writer class:
        the one seen last is assumed and checked by the walker in the same round trip as
        the start; after a change by some client the start is made again in the new one."""
        endpoint, expected = await run_together([self.data_endpoint(),
                                                 self._known_writer_class()])
        self._started_from = endpoint
        try:
            return await self._start_as(expected, endpoint, name)
        except WriterClassChanged as changed:
            self._writer_class = changed.writer_class
            return await self._start_as(changed.writer_class, endpoint, name)

    async def _start_as(self, writer_class: str, endpoint: str, name: str
                        ) -> Coroutine[Any, Any, int]:
        hdf5 = writer_class == "HDF5"  # one file per acquisition, else a directory
        async with self.walker:
            return await self.walker.start_sequence(
                endpoint, name=None if hdf5 else name,
                dsetname=f"{name}.h5" if hdf5 else self.dsetname, writer_class=writer_class)

    def _make_consumer(self, acquisition: Acquisition) -> Callable:
        name = acquisition.name

        async def write(producer: AsyncIterator[Any]) -> int:
            try:
                return await self._write(name, producer)
            finally:
                self._started_from = None

        return write

    async def _write(self, name: str, producer: AsyncIterator[Any]) -> int:
        """Write the frames of acquisition ``name`` (the consumer of its ``producer``);
        return how many were written.

        The acquisition ends once the walker has written its frames. The metadata go to
        the walker afterwards, while the next acquisition starts (:meth:`stored` waits for
        them): sent earlier, the call would hold the walker device, and with it the
        event that tells the end of the sequence."""
        writer = await self._start_writer(name)
        metadata: list[dict[str, Any]] = []
        complete = False  # the last token came, or the producer ended

        async def drain() -> None:
            nonlocal complete
            async for token in producer:
                metadata.append(dict(getattr(token, "metadata", None) or {}))
                if isinstance(token, FrameToken) and token.last:
                    complete = True
            complete = True

        writing = asyncio.ensure_future(writer)
        draining = asyncio.ensure_future(drain())
        tasks = (writing, draining)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            if writing in done and writing.exception() is not None:
                error = writing.exception()
                raise StorageError(f"walker {self._walker_name()}: {type(error).__name__}: "
                                   f"{error}") from error
            for task in done:
                task.result()
            written = await writing
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Frames a failure or a cancel leaves on disk (TIFF files written) keep their
            # metadata, once complete.
            if complete:
                self._store_later(name, metadata)
            raise
        self._store_later(name, metadata)
        self.written[name] = written
        self.metadata[name] = metadata
        if written != len(metadata):
            raise AddonError(f"{name}: {len(metadata)} frames taken, {written} written")
        return written

    def _store_later(self, name: str, metadata: list[dict[str, Any]]) -> None:
        async def store() -> None:
            async with self.walker:
                await self.walker.log_to_json(jsonable(metadata), f"{name}_metadata.json")

        self._storing.append((name, asyncio.ensure_future(store())))

    async def stored(self) -> None:
        """Wait until the metadata of every acquisition written so far are stored; raise
        :class:`StorageError` naming every file that could not be. Cancelling the wait
        leaves the stores going (a later call waits for them)."""
        failures: list[tuple[str, BaseException]] = []
        while self._storing:
            name, task = self._storing[0]
            await asyncio.wait({task})  # never cancels the store itself
            del self._storing[0]
            if not task.cancelled() and task.exception() is not None:
                failures.append((name, task.exception()))
        if failures:
            causes = "; ".join(f"{name}_metadata.json: {type(error).__name__}: {error}"
                               for name, error in failures)
            raise StorageError(f"walker {self._walker_name()}: {causes}") from failures[0][1]


class Accumulator(Addon):
    """Keeps the frames of each acquisition in ``items[acquisition]``: a list, or with
    ``shapes`` (one per acquisition, the first dimension the number of frames) a numpy
    array of ``dtype``."""

    def __init__(
        self,
        acquisitions: Iterable[Acquisition],
        shapes: Sequence[Sequence[int] | None] | None = None,
        dtype: Any = None,
    ) -> None:
        acquisitions = list(acquisitions)
        if shapes is not None and len(shapes) != len(acquisitions):
            raise AddonError(f"{len(shapes)} shapes for {len(acquisitions)} acquisitions")
        self._sinks = {
            acquisition: Accumulate(shape=None if shapes is None else shapes[i], dtype=dtype)
            for i, acquisition in enumerate(acquisitions)
        }
        super().__init__(acquisitions)

    @property
    def items(self) -> dict[Acquisition, list[Any] | np.ndarray]:
        """The accumulated frames of each acquisition (of its last run)."""
        return {acquisition: sink.items for acquisition, sink in self._sinks.items()}

    def _make_consumer(self, acquisition: Acquisition) -> Callable:
        return self._sinks[acquisition]


# -- online reconstruction --------------------------------------------------------------------
@dataclasses.dataclass
class ReconstructionArgs:
    """What :class:`OnlineReconstruction` reconstructs.

    ``slices``: detector rows to reconstruct (default: the middle row); ``center_position_x``:
    the rotation axis in pixels (default: the middle of the frame); ``overall_angle`` and
    ``num_projections``: used for frames without ``rotation_angle`` metadata (default: the
    experiment's ``angular_range`` and ``num_projections``); ``absorptivity``: take
    ``-log`` of the normalised projections; ``width``: side of the square slices in pixels
    (default: the frame width).
    """

    slices: Sequence[int] | None = None
    center_position_x: float | None = None
    overall_angle: Any = None
    num_projections: int | None = None
    absorptivity: bool = True
    width: int | None = None


def ramp_filter(width: int) -> np.ndarray:
    """The spatial-domain-derived ramp (Ram-Lak) filter for ``width`` samples, padded to a
    power of two at least twice as long (its rFFT, ready to multiply)."""
    size = 1 << max(6, math.ceil(math.log2(2 * width)))
    n = np.concatenate((np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)))
    kernel = np.zeros(size)
    kernel[0] = 0.25
    kernel[1::2] = -1 / (np.pi * n) ** 2
    return 2 * np.real(np.fft.rfft(kernel))


class _Backprojector:
    """Accumulates the filtered back-projection of some rows, one projection at a time
    (runs in a worker thread; the instance is used by one thread at a time)."""

    def __init__(self, rows: np.ndarray, center: float, size: int) -> None:
        self.rows = rows
        self.center = center
        self.size = size
        grid = np.arange(size, dtype=np.float64) - (size - 1) / 2
        self.x, self.y = np.meshgrid(grid, -grid)
        self.slices = np.zeros((len(rows), size, size), dtype=np.float64)
        self.count = 0
        self._filter: np.ndarray | None = None
        self._padded = 0

    def add(self, lines: np.ndarray, angle: float) -> None:
        """Add the projection ``lines`` (one line per row, already normalised) at ``angle``
        (radians)."""
        width = lines.shape[1]
        if self._filter is None:
            self._filter = ramp_filter(width)
            self._padded = 2 * (len(self._filter) - 1)
        padded = np.zeros((lines.shape[0], self._padded))
        padded[:, :width] = lines
        filtered = np.fft.irfft(np.fft.rfft(padded, axis=1) * self._filter, axis=1)[:, :width]
        positions = self.x * math.cos(angle) + self.y * math.sin(angle) + self.center
        left = np.floor(positions).astype(np.intp)
        weight = positions - left
        inside = (left >= 0) & (left < width - 1)
        left = np.where(inside, left, 0)
        for i, line in enumerate(filtered):
            values = line[left] * (1 - weight) + line[left + 1] * weight
            self.slices[i] += np.where(inside, values, 0)
        self.count += 1

    def result(self, angular_span: float) -> np.ndarray:
        """The slices, scaled for projections spread over ``angular_span`` radians."""
        if not self.count:
            return np.zeros_like(self.slices, dtype=np.float32)
        return (self.slices * (angular_span / self.count / 2)).astype(np.float32)


class OnlineReconstruction(Addon):
    """Reconstructs the slices ``reco_args.slices`` by filtered back-projection while the
    projections of ``experiment`` (acquisition ``radios``) arrive.

    With ``do_normalization`` the projections are flat- and dark-corrected with the frames
    of the ``flats`` and ``darks`` acquisitions (their average, or only the first of each
    without ``average_normalization``); those must run before the projections. The angle of
    a projection is its ``rotation_angle`` metadata (degrees) if present. All numerical work
    runs in worker threads. After the run, :attr:`slices` holds the reconstruction (one
    float32 image per row, the detector's attenuation per pixel) and, with a ``walker``, it
    is written to ``slice_directory`` at the walker's position.
    """

    def __init__(
        self,
        experiment: Experiment,
        reco_args: ReconstructionArgs | dict[str, Any] | None = None,
        do_normalization: bool = True,
        average_normalization: bool = True,
        walker: Any = None,
        slice_directory: str = "online-slices",
    ) -> None:
        if isinstance(reco_args, dict):
            reco_args = ReconstructionArgs(**reco_args)
        self.experiment = experiment
        self.args = reco_args or ReconstructionArgs()
        self.do_normalization = do_normalization
        self.average_normalization = average_normalization
        self.walker = walker
        self.slice_directory = slice_directory
        self.slices: np.ndarray | None = None
        self.dark: np.ndarray | None = None
        self.flat: np.ndarray | None = None
        self.num_received_projections = 0
        self.num_processed_projections = 0
        self._angles: list[float] = []
        names = ("darks", "flats", "radios") if do_normalization else ("radios",)
        acquisitions = []
        for name in names:
            try:
                acquisitions.append(experiment.get_acquisition(name))
            except ValueError:
                raise OnlineReconstructionError(
                    f"{type(experiment).__name__} has no acquisition {name!r}") from None
        super().__init__(acquisitions)

    def _make_consumer(self, acquisition: Acquisition) -> Callable:
        if acquisition.name == "darks":
            return self.update_darks
        if acquisition.name == "flats":
            return self.update_flats
        return self.reconstruct

    async def _average(self, producer: AsyncIterator[Any]) -> np.ndarray | None:
        total: np.ndarray | None = None
        number = 0
        async for frame in producer:
            if total is None:
                total = np.array(frame, dtype=np.float64)
            elif self.average_normalization:
                total = await run_in_executor(np.add, total, frame)
            number += 1
        if total is None:
            return None
        return total / (number if self.average_normalization else 1)

    async def update_darks(self, producer: AsyncIterator[Any]) -> None:
        """Take new darks from ``producer`` (averaged)."""
        self.dark = await self._average(producer)

    async def update_flats(self, producer: AsyncIterator[Any]) -> None:
        """Take new flats from ``producer`` (averaged)."""
        self.flat = await self._average(producer)

    async def _default_angles(self) -> tuple[float, int]:
        overall = self.args.overall_angle
        number = self.args.num_projections
        if overall is None and "angular_range" in self.experiment:
            overall = await self.experiment["angular_range"].get()
        if number is None and "num_projections" in self.experiment:
            number = await self.experiment["num_projections"].get()
        if overall is None:
            overall = 180 * q.deg
        radians = float(overall.to(q.rad).magnitude) if hasattr(overall, "to") else \
            math.radians(float(overall))
        return radians, int(number or 1)

    def _lines(self, frame: np.ndarray, rows: np.ndarray) -> np.ndarray:
        lines = np.asarray(frame, dtype=np.float64)[rows]
        if self.do_normalization:
            dark = self.dark[rows] if self.dark is not None else 0.0
            if self.flat is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    lines = (lines - dark) / (self.flat[rows] - dark)
            else:
                lines = lines - dark
        if self.args.absorptivity:
            with np.errstate(divide="ignore", invalid="ignore"):
                lines = -np.log(lines)
        return np.nan_to_num(lines, nan=0.0, posinf=0.0, neginf=0.0)

    async def reconstruct(self, producer: AsyncIterator[Any]) -> None:
        """Back-project the projections of ``producer`` as they come."""
        if self.do_normalization and self.flat is None:
            raise OnlineReconstructionError("no flats: the flats acquisition must run before "
                                            "the projections (or use do_normalization=False)")
        span, number = await self._default_angles()
        step = span / number
        self.num_received_projections = self.num_processed_projections = 0
        self._angles = []
        backprojector: _Backprojector | None = None
        rows = np.array([], dtype=np.intp)
        async for frame in producer:
            self.num_received_projections += 1
            if backprojector is None:
                height, width = np.shape(frame)[:2]
                rows = np.array(self.args.slices if self.args.slices is not None
                                else [height // 2], dtype=np.intp)
                if rows.size == 0 or rows.min() < 0 or rows.max() >= height:
                    raise OnlineReconstructionError(
                        f"slices {rows.tolist()} are not rows of a {height} pixel high frame")
                center = (self.args.center_position_x if self.args.center_position_x
                          is not None else (width - 1) / 2)
                backprojector = _Backprojector(rows, center, self.args.width or width)
            metadata = getattr(frame, "metadata", {}) or {}
            if "rotation_angle" in metadata:
                angle = math.radians(float(metadata["rotation_angle"]))
            else:
                angle = len(self._angles) * step
            self._angles.append(angle)
            await run_in_executor(self._process, backprojector, frame, rows, angle)
            self.num_processed_projections += 1
        if backprojector is None:
            return
        self.slices = backprojector.result(span)
        if self.walker is not None:
            await self._write(rows)

    def _process(self, backprojector: _Backprojector, frame: np.ndarray, rows: np.ndarray,
                 angle: float) -> None:
        backprojector.add(self._lines(frame, rows), angle)

    async def _write(self, rows: np.ndarray) -> None:
        assert self.slices is not None
        images = [ImageWithMetadata(image, {"slice_row": int(row), "index": i})
                  for i, (row, image) in enumerate(zip(rows, self.slices, strict=True))]
        async with self.walker:
            writer = await self.walker.create_writer(images, name=self.slice_directory)
        await writer


# -- grating interferometry -----------------------------------------------------------------
class PhaseGratingSteppingFourierProcessing(Addon):
    """Processes a :class:`~experiments.imaging.GratingInterferometryStepping` run: averages
    the darks, takes the first harmonic of the stepping curves of the reference and the
    object scans (Fourier analysis along the steps), and computes

    * ``intensity``: object / reference mean intensity (transmission),
    * ``visibility``: object / reference visibility (dark-field contrast),
    * ``diff_phase``: object - reference phase of the first harmonic (rad, wrapped),
    * ``deflection_angle``: ``diff_phase * grating_period / (2 pi propagation_distance)``
      (rad).

    The acquisitions may run in any order; the result is computed when the last of them
    ends and written as float32 images to ``output_directory`` with the experiment's walker.
    """

    def __init__(self, experiment: Experiment, output_directory: str = "contrasts") -> None:
        self.experiment = experiment
        self.output_directory = output_directory
        self.dark: np.ndarray | None = None
        self.reference: np.ndarray | None = None
        self.object: np.ndarray | None = None
        self.intensity: np.ndarray | None = None
        self.visibility: np.ndarray | None = None
        self.diff_phase: np.ndarray | None = None
        self.deflection_angle: np.ndarray | None = None
        self.reference_visibility: np.ndarray | None = None
        self.object_visibility: np.ndarray | None = None
        self._pending: set[str] = set()
        names = ("darks", "reference_stepping", "object_stepping")
        super().__init__([experiment.get_acquisition(name) for name in names])

    def _make_consumer(self, acquisition: Acquisition) -> Callable:
        return {
            "darks": self.process_darks,
            "reference_stepping": self.process_reference,
            "object_stepping": self.process_object,
        }[acquisition.name]

    async def _stack(self, producer: AsyncIterator[Any]) -> np.ndarray | None:
        frames = [np.asarray(frame, dtype=np.float32) async for frame in producer]
        return np.stack(frames) if frames else None

    async def process_darks(self, producer: AsyncIterator[Any]) -> None:
        """Average the dark images of ``producer``."""
        stack = await self._stack(producer)
        self.dark = None if stack is None else await run_in_executor(np.mean, stack, 0)
        await self._finish("darks")

    async def process_reference(self, producer: AsyncIterator[Any]) -> None:
        """Keep the reference stepping scan (without sample)."""
        self.reference = await self._stack(producer)
        await self._finish("reference_stepping")

    async def process_object(self, producer: AsyncIterator[Any]) -> None:
        """Keep the object stepping scan (with sample)."""
        self.object = await self._stack(producer)
        await self._finish("object_stepping")

    async def _finish(self, name: str) -> None:
        self._pending.add(name)
        if self._pending >= {"darks", "reference_stepping", "object_stepping"}:
            self._pending = set()
            await self.process()

    @staticmethod
    def _harmonics(stack: np.ndarray, dark: np.ndarray | None, periods: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        data = stack - dark if dark is not None else stack
        spectrum = np.fft.rfft(data, axis=0)
        mean = np.abs(spectrum[0]) / len(data)
        first = spectrum[periods] if periods < len(spectrum) else np.zeros_like(spectrum[0])
        amplitude = 2 * np.abs(first) / len(data)
        with np.errstate(divide="ignore", invalid="ignore"):
            visibility = np.where(mean > 0, amplitude / mean, 0)
        return mean, visibility, np.angle(first)

    def _compute(self, periods: int, period_um: float, distance_mm: float) -> None:
        assert self.reference is not None and self.object is not None
        ref_mean, ref_vis, ref_phase = self._harmonics(self.reference, self.dark, periods)
        obj_mean, obj_vis, obj_phase = self._harmonics(self.object, self.dark, periods)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.intensity = np.nan_to_num(obj_mean / ref_mean).astype(np.float32)
            self.visibility = np.nan_to_num(obj_vis / ref_vis).astype(np.float32)
        self.diff_phase = np.angle(np.exp(1j * (obj_phase - ref_phase))).astype(np.float32)
        self.reference_visibility = ref_vis.astype(np.float32)
        self.object_visibility = obj_vis.astype(np.float32)
        scale = period_um * 1e-6 / (2 * np.pi * distance_mm * 1e-3) if distance_mm else 0.0
        self.deflection_angle = (self.diff_phase * scale).astype(np.float32)

    async def process(self) -> None:
        """Compute the contrasts from the kept scans and write them with the walker."""
        if self.reference is None or self.object is None:
            raise AddonError("both stepping scans are needed for the processing")
        experiment = self.experiment
        periods = await experiment["num_periods"].get()
        period = float((await experiment["grating_period"].get()).to(q.um).magnitude)
        distance = float((await experiment["propagation_distance"].get()).to(q.mm).magnitude)
        await run_in_executor(self._compute, periods, period, distance)
        walker = experiment.walker
        if walker is None:
            return
        images = {"intensity": self.intensity, "visibility": self.visibility,
                  "diff_phase": self.diff_phase, "deflection_angle": self.deflection_angle}
        async with walker:
            await walker.descend(self.output_directory)
            try:
                writers = [await walker.create_writer(
                    [ImageWithMetadata(image, {"contrast": name})], name=name)
                    for name, image in images.items()]
            finally:
                await walker.ascend()
        await asyncio.gather(*writers)


__all__ = [
    "Accumulator",
    "Addon",
    "AddonError",
    "Consumer",
    "ImageWriter",
    "OnlineReconstruction",
    "OnlineReconstructionError",
    "PhaseGratingSteppingFourierProcessing",
    "ReconstructionArgs",
    "RemoteImageWriter",
    "ramp_filter",
]
