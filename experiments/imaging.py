"""Imaging experiments: radiography, tomography (stepped, continuous, spiral) and grating
interferometry, independent of the X-ray source.

Every experiment records dark fields (``darks``: no beam), flat fields (``flats``: beam, the
sample moved out by the ``flat_motor``) and projections (``radios``: the sample in the beam),
in this order unless :meth:`~experiments.base.Experiment.swap` changes it. Around each
acquisition the hooks ``_prepare_<darks|flats|radios>`` and ``_finish_<...>`` run; the source
is switched by :meth:`start_sample_exposure` and :meth:`stop_sample_exposure`, which the
source-specific variants (:mod:`experiments.synchrotron`, :mod:`experiments.xraytube`)
implement. ``_produce_frames`` can be overridden for special cameras.

Each frame's metadata hold ``acquisition``, ``index`` (within the acquisition),
``exposure_time`` (s), ``camera_index`` (the camera's own frame number, where it gives one)
and what the motors did for that frame (``rotation_angle`` in deg, ``vertical_position`` in
mm, ``stepping_position`` in µm); a synchrotron variant with a storage ring adds
``ring_current`` (mA).

Only the public device API is used, so the experiments run unchanged on remote devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pint

from concert_core.coroutines import cancel_and_wait, sleep
from concert_core.devices.cameras.base import Camera, CameraError
from concert_core.devices.motors.base import LinearMotor, RotationMotor
from concert_core.helpers import ImageWithMetadata
from concert_core.parameter import Parameter, Quantity
from concert_core.quantities import q
from experiments.base import (
    IDLE,
    Acquisition,
    Experiment,
    FrameToken,
    boolean,
    bound_endpoint,
    count,
    positive_count,
    run_together,
    stored,
)

FrameInfo = Callable[[int], Awaitable[dict[str, Any]]]


# -- helpers ----------------------------------------------------------------------------------
async def frames(
    num_frames: int, camera: Camera, callback: Callable[[], Awaitable[Any]] | None = None
) -> AsyncIterator[ImageWithMetadata]:
    """Yield ``num_frames`` frames of ``camera``, each triggered in software.

    A recording in progress is stopped first; the trigger source is restored and the camera
    stopped afterwards, also when the consumer stops early or the task is cancelled.
    ``callback`` is awaited after every frame.
    """
    if await camera.get_state() == "recording":
        await camera.stop_recording()
    await camera["trigger_source"].stash()
    try:
        await camera.set_trigger_source("SOFTWARE")
        async with camera.recording():
            for _ in range(num_frames):
                await camera.trigger()
                yield await camera.grab()
                if callback is not None:
                    await callback()
    finally:
        await camera["trigger_source"].restore()


def _pixels(frame_width: Any) -> float:
    if isinstance(frame_width, pint.Quantity):
        frame_width = frame_width.to(q.pixel).magnitude
    width = float(frame_width)
    if width < 1:
        raise ValueError(f"frame width must be at least one pixel, got {frame_width!r}")
    return width


def tomo_angular_step(frame_width: Any) -> pint.Quantity:
    """The angular step which moves the outermost pixel of a ``frame_width`` wide frame
    (perpendicular to the rotation axis) by at most one pixel."""
    return (math.atan(2 / _pixels(frame_width)) * q.rad).to(q.deg)


def tomo_projections_number(frame_width: Any) -> int:
    """The minimum number of projections over 180° for ``frame_width``: every distance from
    the axis gets a data point at least every pixel."""
    return math.ceil(math.pi / tomo_angular_step(frame_width).to(q.rad).magnitude)


def tomo_max_speed(frame_width: Any, frame_rate: Any) -> pint.Quantity:
    """The highest rotation speed blurring a ``frame_width`` wide frame by less than a pixel
    at ``frame_rate`` (the whole frame period counts, not only the exposure)."""
    if not isinstance(frame_rate, pint.Quantity):
        frame_rate = frame_rate / q.s
    return (tomo_angular_step(frame_width) * frame_rate).to(q.deg / q.s)


#: Where a motor binds its trigger output for a hardware-timed scan if it has none.
TRIGGER_ENDPOINT = "tcp://127.0.0.1:0"
#: Frames a camera sending them itself may lag behind the triggers.
_MAX_AHEAD = 16
#: Seconds between two reads of a sending camera's frame counter.
_GRABBED_POLL = 0.01
#: Seconds a failed trigger waits for the camera's send to report why it failed.
_CAUSE_WAIT = 1.0


async def _until_recording(camera: Camera, sending: asyncio.Future, timeout: float = 5.0) -> None:
    """Wait until ``grab_send`` has the camera recording (raise its error if it failed).

    A remote camera's send tells the state the camera answered it in (``started``): that
    is awaited instead of polling the state."""
    deadline = asyncio.get_running_loop().time() + timeout
    started = getattr(sending, "started", None)
    if started is not None:
        await asyncio.wait({started, sending}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if started.done() and started.result() == "recording":
            return
    while await camera.get_state() != "recording":
        if sending.done():
            sending.result()
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the camera did not start recording within {timeout} s")
        await asyncio.sleep(0.001)


def _camera_error(camera: Camera, sending: asyncio.Future | None, error: Exception
                  ) -> CameraError:
    """A :class:`CameraError` naming the camera, with the send's error if it failed."""
    if sending is not None and sending.done() and not sending.cancelled() \
            and sending.exception() is not None:
        error = sending.exception()  # type: ignore[assignment]
    name = getattr(camera, "tango_name", type(camera).__name__)
    return CameraError(f"camera {name}: {type(error).__name__}: {error}")


async def _wait_grabbed(camera: Camera, sending: asyncio.Future, wanted: int, total: int,
                        scan: asyncio.Future | None = None) -> int:
    """Wait until the camera has grabbed ``wanted`` of the ``total`` frames of ``sending``
    (its ``grab_send(total)``); return how many it has. A send that ended well has grabbed
    them all: no read is needed then.

    A failed ``scan`` (the motor triggering the camera) ends the wait with its own error."""
    while True:
        if sending.done():
            try:
                sending.result()
            except Exception as error:
                raise _camera_error(camera, sending, error) from error
            return total
        grabbed = int(await camera.get_frames_grabbed())
        if grabbed >= wanted:
            return grabbed
        if scan is not None and scan.done() and scan.exception() is not None:
            raise scan.exception()  # type: ignore[misc]
        # Poll, but wake at once when the send ends.
        watch = {sending} if scan is None or scan.done() else {sending, scan}
        await asyncio.wait(watch, timeout=_GRABBED_POLL, return_when=asyncio.FIRST_COMPLETED)


async def _unless_failed(awaitable: Awaitable[Any], other: asyncio.Future) -> Any:
    """Await ``awaitable``; if ``other`` fails first, cancel it and raise that error."""
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({task, other}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and other.exception() is not None:
            raise other.exception()  # type: ignore[misc]
        return await task
    finally:
        await cancel_and_wait(task)


def _no_info(_index: int) -> dict[str, Any]:
    return {}


def _seconds(value: Any) -> float:
    return float(value.to(q.s).magnitude) if isinstance(value, pint.Quantity) else float(value)


# -- the common base -------------------------------------------------------------------------
class ImagingExperiment(Experiment):
    """What all imaging experiments share: a camera, frame production, exposure hooks and the
    cleanup of a cancelled or failed run."""

    async def __ainit__(
        self, acquisitions: list[Acquisition], walker: Any, camera: Camera,
        separate_scans: bool = True,
    ) -> None:
        self._camera = camera
        #: Set by :class:`~experiments.addons.RemoteImageWriter`: the camera sends its
        #: frames to the writer itself and the producers yield frame tokens.
        self.direct_writer: Any = None
        # Inside _finishing: the camera's settings go back while the finish hook runs.
        self._finish_pending = False
        self._restoring: asyncio.Future | None = None
        await super().__ainit__(acquisitions, walker, separate_scans=separate_scans)

    # -- source: implemented by the source-specific variants --------------------------------
    async def start_sample_exposure(self) -> None:
        """Expose the sample to radiation (open a shutter, switch a tube on, ...)."""
        raise NotImplementedError(f"{type(self).__name__} does not know how to expose the sample;"
                                  " use a synchrotron or X-ray-tube variant")

    async def stop_sample_exposure(self) -> None:
        """Stop exposing the sample (close a shutter, switch a tube off, ...)."""
        raise NotImplementedError(f"{type(self).__name__} does not know how to stop the "
                                  "exposure; use a synchrotron or X-ray-tube variant")

    async def _frame_metadata(self) -> dict[str, Any]:
        """Metadata added to every frame (a synchrotron variant adds the ring current)."""
        return {}

    # -- frames ------------------------------------------------------------------------------
    def _hardware_timed(self) -> bool:
        """True if the frames are timed by hardware: frames taken where nothing moves
        (darks, flats) are then triggered by the camera itself (AUTO, at its frame rate)."""
        return False

    def _stamp(self, frame: Any, index: int, exposure: float, extra: dict[str, Any]) -> Any:
        if not isinstance(frame, ImageWithMetadata):
            frame = ImageWithMetadata(frame)
        metadata = frame.metadata
        if "index" in metadata:
            metadata["camera_index"] = metadata["index"]
        metadata["index"] = index
        metadata["exposure_time"] = exposure
        metadata.update(extra)
        return frame

    async def _setup_camera(self, source: str, saved: dict[str, Any],
                            trigger_input: Awaitable[str] | None = None) -> float:
        """Stop a recording in progress and set the camera's ``trigger_source`` (and its
        ``trigger_input`` to what ``trigger_input`` returns); with a direct writer bind its
        data endpoint. The camera's settings and state are read together (one round trip
        to a remote camera). The old values of what is set are put in ``saved`` before it
        is set, for :meth:`_restore_camera`. Returns the exposure time (s)."""
        camera = self._camera
        restoring, self._restoring = self._restoring, None
        if restoring is not None:  # an earlier block's settings go back first
            await restoring
        names = ["state", "exposure_time", "trigger_source"]
        reads = [camera.read_values(
            names if trigger_input is None else [*names, "trigger_input"])]
        if trigger_input is not None:
            reads.append(trigger_input)
        if self.direct_writer is not None:
            reads.append(self.direct_writer.data_endpoint())
        values, *rest = await run_together(reads)
        for value in values.values():
            if isinstance(value, Exception):
                raise value
        state, exposure, old_source = (values[name] for name in names)
        if state == "recording":
            await camera.stop_recording()
        writes: dict[str, Any] = {}
        if trigger_input is not None and values["trigger_input"] != rest[0]:
            writes["trigger_input"] = rest[0]
        if old_source != source:
            writes["trigger_source"] = source
        if writes:
            saved.update((name, values[name]) for name in writes)
            await camera.write_values(writes)  # one round trip to a remote camera
        return _seconds(exposure)

    @contextlib.asynccontextmanager
    async def _camera_set_to(self, source: str, trigger_input: Awaitable[str] | None = None
                             ) -> AsyncIterator[float]:
        """:meth:`_setup_camera` for the block it wraps (giving the exposure time in s),
        then :meth:`_restore_camera`, also when the block fails or its consumer stops.
        Within :meth:`_finishing`, a restore after success goes on while the acquisition's
        finish hook runs."""
        saved: dict[str, Any] = {}
        try:
            yield await self._setup_camera(source, saved, trigger_input)
        except BaseException:
            await self._restore_camera(saved, failed=True)
            raise
        if self._finish_pending and saved:
            self._restoring = asyncio.ensure_future(self._restore_camera(saved, failed=False))
        else:
            await self._restore_camera(saved, failed=False)

    @contextlib.asynccontextmanager
    async def _finishing(self, finish: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
        """Wrap the frames of an acquisition; then run its ``finish`` hook (closing a
        shutter, ...) while the camera's settings go back: the two concern different
        devices. Both are done when this ends; the first error of the two is raised."""
        self._finish_pending = True
        try:
            yield
        finally:
            self._finish_pending = False
            restoring, self._restoring = self._restoring, None
            if restoring is None:
                await finish()
            else:
                outcomes = await asyncio.gather(finish(), restoring, return_exceptions=True)
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome

    async def _restore_camera(self, saved: dict[str, Any], failed: bool) -> None:
        """Set the camera's settings in ``saved`` back; after a failure (``failed``) a
        refusal is logged, not raised, so that the original error is the one seen."""
        if not failed:  # the writes go out together
            if saved:
                await self._camera.write_values(saved)
            return
        for name, value in saved.items():  # in turn: this may run while being cancelled
            try:
                await getattr(self._camera, f"set_{name}")(value)
            except Exception as error:
                self.log.warning("restoring the camera's %s: %s", name, error)

    async def _produce_frames(
        self, number: int, before: FrameInfo | None = None
    ) -> AsyncIterator[ImageWithMetadata]:
        """Yield ``number`` software-triggered frames; ``await before(i)`` positions the
        devices for frame ``i`` and returns metadata for it."""
        if before is None and self._hardware_timed():
            async for frame in self._produce_continuous(number, _no_info):
                yield frame
            return
        if self.direct_writer is not None:
            async for token in self._produce_sent(number, before):
                yield token
            return
        camera = self._camera
        async with self._camera_set_to("SOFTWARE") as exposure, camera.recording():
            for index in range(number):
                extra = await before(index) if before is not None else {}
                await camera.trigger()
                frame = await camera.grab()
                extra.update(await self._frame_metadata())
                yield self._stamp(frame, index, exposure, extra)

    async def _produce_sent(
        self, number: int, before: FrameInfo | None = None
    ) -> AsyncIterator[ImageWithMetadata]:
        """As :meth:`_produce_frames`, but the camera sends the frames to its
        ``data_endpoint`` itself (``grab_send``) and this yields *frame tokens*: empty
        arrays whose metadata are those of the frame (the frames never pass through here).

        After a trigger the next position waits for the exposure time only; the camera
        may lag at most ``_MAX_AHEAD`` frames behind the triggers.
        """
        camera = self._camera
        async with self._camera_set_to("SOFTWARE") as exposure:
            sending = asyncio.ensure_future(camera.grab_send(number))
            try:
                await _until_recording(camera, sending)
                loop = asyncio.get_running_loop()
                confirmed = 0
                for index in range(number):
                    extra = await before(index) if before is not None else {}
                    began = loop.time()
                    # The frame's metadata (a ring current, ...) are read during its exposure.
                    metadata = asyncio.ensure_future(self._frame_metadata())
                    try:
                        try:
                            await camera.trigger()
                        except Exception as error:
                            # A trigger refused because the camera failed: the send reports
                            # the cause a moment later, and that is the error to show.
                            await asyncio.wait({sending}, timeout=_CAUSE_WAIT)
                            raise _camera_error(camera, sending, error) from error
                        extra.update(await metadata)
                    finally:
                        await cancel_and_wait(metadata)
                    if index + 1 - confirmed > _MAX_AHEAD:
                        confirmed = await _wait_grabbed(camera, sending,
                                                        index + 1 - _MAX_AHEAD, number)
                    rest = exposure - (loop.time() - began)
                    if rest > 0:
                        await sleep(rest)  # keeps sub-millisecond rests
                    token = FrameToken.new(last=index + 1 == number)
                    yield self._stamp(token, index, exposure, extra)
                try:
                    await sending
                except Exception as error:
                    raise _camera_error(camera, sending, error) from error
            finally:
                await cancel_and_wait(sending)

    async def _produce_continuous(
        self, number: int, info: Callable[[int], dict[str, Any]]
    ) -> AsyncIterator[ImageWithMetadata]:
        """Yield ``number`` frames the camera triggers itself (AUTO) at its frame rate;
        ``info(i)`` gives frame ``i``'s metadata. With a ``direct_writer`` the camera sends
        the frames itself and this yields frame tokens as the camera grabs them."""
        async with self._camera_set_to("AUTO") as exposure:
            if self.direct_writer is not None:
                async for token in self._sent_tokens(number, exposure, info):
                    yield token
            else:
                async with self._camera.recording():
                    async for frame in self._grabbed(number, exposure, info):
                        yield frame

    async def _produce_triggered(
        self, number: int, motor: Any, step: pint.Quantity, info: Callable[[int], dict[str, Any]]
    ) -> AsyncIterator[ImageWithMetadata]:
        """Yield ``number`` frames of a hardware-timed step scan: ``motor`` steps by ``step``
        from where it is, pulsing its ``trigger_output`` at each position, and the camera
        (trigger source ``EXTERNAL``, its ``trigger_input`` wired to that output) exposes a
        frame per pulse; the motor dwells ``exposure_time`` at each position. ``info(i)``
        gives frame ``i``'s metadata. With a ``direct_writer`` the camera sends the frames
        itself and this yields frame tokens as the camera grabs them."""
        output = bound_endpoint(motor.get_trigger_output, motor.set_trigger_output,
                                TRIGGER_ENDPOINT)
        async with self._camera_set_to("EXTERNAL", trigger_input=output) as exposure:
            if self.direct_writer is not None:
                async for token in self._sent_tokens(number, exposure, info, motor, step):
                    yield token
            else:
                async with self._camera.recording():
                    scan = asyncio.ensure_future(motor.step_scan(step, number, exposure * q.s))
                    try:
                        async for frame in self._grabbed(number, exposure, info, scan):
                            yield frame
                        await scan
                    finally:
                        await cancel_and_wait(scan)

    async def _grabbed(
        self, number: int, exposure: float, info: Callable[[int], dict[str, Any]],
        scan: asyncio.Future | None = None,
    ) -> AsyncIterator[ImageWithMetadata]:
        """Grab ``number`` frames of the recording camera, with ``info(i)`` as metadata; a
        failed ``scan`` (the motor triggering the camera) ends it with its own error."""
        for index in range(number):
            grab = self._camera.grab()
            frame = await (grab if scan is None else _unless_failed(grab, scan))
            extra = info(index)
            extra.update(await self._frame_metadata())
            yield self._stamp(frame, index, exposure, extra)

    async def _sent_tokens(
        self, number: int, exposure: float, info: Callable[[int], dict[str, Any]],
        motor: Any = None, step: pint.Quantity | None = None,
    ) -> AsyncIterator[ImageWithMetadata]:
        """Frame tokens of ``number`` frames the camera triggers without us (AUTO, or pulses
        of ``motor``'s ``step_scan`` by ``step``) and sends to the direct writer itself,
        yielded as the camera grabs them."""
        camera = self._camera
        sending = asyncio.ensure_future(camera.grab_send(number))
        scan: asyncio.Future | None = None
        try:
            await _until_recording(camera, sending)
            if motor is not None:
                scan = asyncio.ensure_future(motor.step_scan(step, number, exposure * q.s))
            grabbed = 0
            for index in range(number):
                if grabbed <= index:
                    grabbed = await _wait_grabbed(camera, sending, index + 1, number, scan)
                extra = info(index)
                extra.update(await self._frame_metadata())
                token = FrameToken.new(last=index + 1 == number)
                yield self._stamp(token, index, exposure, extra)
            if scan is not None:
                await scan
            try:
                await sending
            except Exception as error:
                raise _camera_error(camera, sending, error) from error
        finally:
            if scan is not None:
                await cancel_and_wait(scan)
            await cancel_and_wait(sending)

    async def settle(self) -> None:
        """Wait until the direct writer has stored the metadata of the acquisitions."""
        if self.direct_writer is not None:
            await self.direct_writer.stored()

    # -- cleanup -----------------------------------------------------------------------------
    def motors(self) -> list[Any]:
        """The motors of this experiment."""
        return [device for device in self.devices().values()
                if isinstance(device, (LinearMotor, RotationMotor))]

    async def cleanup(self) -> None:
        """Stop every motor, stop the exposure and the camera (after a cancel or an error)."""
        calls = [motor.stop() for motor in self.motors()]
        calls.append(self.stop_sample_exposure())
        results = await asyncio.gather(*calls, return_exceptions=True)
        camera = self._camera
        try:
            state = await camera.get_state()
            if state == "recording":
                await camera.stop_recording()
            elif state == "readout" and hasattr(camera, "stop_readout"):
                await camera.stop_readout()
        except Exception as error:
            results.append(error)
        for result in results:
            if isinstance(result, Exception):
                self.log.error("cleanup: %s: %s", type(result).__name__, result)

    # -- dark fields -------------------------------------------------------------------------
    async def _prepare_darks(self) -> None:
        await self.stop_sample_exposure()

    async def _finish_darks(self) -> None:
        pass

    async def _take_darks(self) -> AsyncIterator[ImageWithMetadata]:
        await self._prepare_darks()
        async with self._finishing(self._finish_darks):
            async for frame in self._produce_frames(self._num_darks):
                yield frame


class Radiography(ImagingExperiment):
    """Dark fields, flat fields and projections of a sample that stays put.

    ``flat_motor`` moves the sample out of the beam (``flat_position``) for the flats and
    into it (``radio_position``) for the projections.
    """

    num_flats = Parameter(*stored("num_flats", count), check=IDLE,
                          help="Number of flat-field images")
    num_darks = Parameter(*stored("num_darks", count), check=IDLE,
                          help="Number of dark-field images")
    num_projections = Parameter(*stored("num_projections", count), check=IDLE,
                                help="Number of projections")
    radio_position = Quantity(q.mm, *stored("radio_position"), check=IDLE,
                              help="Position of flat_motor with the sample in the beam")
    flat_position = Quantity(q.mm, *stored("flat_position"), check=IDLE,
                             help="Position of flat_motor with the sample out of the beam")

    async def __ainit__(
        self,
        walker: Any,
        flat_motor: LinearMotor,
        radio_position: pint.Quantity,
        flat_position: pint.Quantity,
        camera: Camera,
        num_flats: int = 200,
        num_darks: int = 200,
        num_projections: int = 3000,
        separate_scans: bool = True,
    ) -> None:
        self._flat_motor = flat_motor
        self._num_flats = count(num_flats)
        self._num_darks = count(num_darks)
        self._num_projections = count(num_projections)
        self._radio_position = self["radio_position"].parameter.convert(radio_position)
        self._flat_position = self["flat_position"].parameter.convert(flat_position)
        acquisitions = [
            await Acquisition("darks", self._take_darks),
            await Acquisition("flats", self._take_flats),
            await Acquisition("radios", self._take_radios),
        ]
        await super().__ainit__(acquisitions, walker, camera, separate_scans)

    # -- flats -------------------------------------------------------------------------------
    async def _prepare_flats(self) -> None:
        # Moving and opening at once: no frame is taken before both are done.
        await run_together([self._flat_motor.set_position(self._flat_position),
                            self.start_sample_exposure()])

    async def _finish_flats(self) -> None:
        await self.stop_sample_exposure()

    async def _take_flats(self) -> AsyncIterator[ImageWithMetadata]:
        await self._prepare_flats()
        async with self._finishing(self._finish_flats):
            async for frame in self._produce_frames(self._num_flats):
                yield frame

    # -- projections -------------------------------------------------------------------------
    async def _prepare_radios(self) -> None:
        await run_together([self._flat_motor.set_position(self._radio_position),
                            self.start_sample_exposure()])

    async def _finish_radios(self) -> None:
        await self.stop_sample_exposure()

    async def _projections(self) -> AsyncIterator[ImageWithMetadata]:
        async for frame in self._produce_frames(self._num_projections):
            yield frame

    async def _take_radios(self) -> AsyncIterator[ImageWithMetadata]:
        await self._prepare_radios()
        async with self._finishing(self._finish_radios):
            async for frame in self._projections():
                yield frame


class Tomography(Radiography):
    """Radiography with a ``tomography_motor`` rotating the sample over ``angular_range``
    from ``start_angle`` for the projections (abstract: see the stepped and continuous
    variants)."""

    angular_range = Quantity(q.deg, *stored("angular_range"), check=IDLE,
                             help="Rotation range of the tomography_motor during the scan")
    start_angle = Quantity(q.deg, *stored("start_angle"), check=IDLE,
                           help="Position of the tomography_motor for the first projection")

    async def __ainit__(
        self,
        walker: Any,
        flat_motor: LinearMotor,
        tomography_motor: RotationMotor,
        radio_position: pint.Quantity,
        flat_position: pint.Quantity,
        camera: Camera,
        num_flats: int = 200,
        num_darks: int = 200,
        num_projections: int = 3000,
        angular_range: pint.Quantity = 180 * q.deg,
        start_angle: pint.Quantity = 0 * q.deg,
        separate_scans: bool = True,
    ) -> None:
        self._tomography_motor = tomography_motor
        self._angular_range = self["angular_range"].parameter.convert(angular_range)
        self._start_angle = self["start_angle"].parameter.convert(start_angle)
        await super().__ainit__(walker, flat_motor, radio_position, flat_position, camera,
                                num_flats, num_darks, num_projections, separate_scans)

    def _angle(self, index: int) -> pint.Quantity:
        step = self._angular_range / max(self._num_projections, 1)
        return self._start_angle + index * step

    def _projection_info(self) -> Callable[[int], dict[str, Any]]:
        """The metadata of projection ``index`` known in advance (its rotation angle), as a
        function for one acquisition: start and step are converted to degrees once, not
        per frame (the parameters cannot change while a run goes on)."""
        start = float(self._angle(0).to(q.deg).magnitude)
        step = float((self._angle(1) - self._angle(0)).to(q.deg).magnitude)
        return lambda index: {"rotation_angle": start + index * step}

    async def _prepare_radios(self) -> None:
        await run_together([
            self._flat_motor.set_position(self._radio_position),
            self._tomography_motor.set_position(self._start_angle),
            self.start_sample_exposure(),
        ])


class SteppedTomography(Tomography):
    """Tomography moving the sample to each angle and taking one projection there.

    With ``hardware_trigger`` the projections are a hardware-timed step scan: the
    tomography motor steps through the angles itself (``step_scan``) and pulses the
    camera's ``trigger_input`` at each one, as a motion controller wired to the camera's
    trigger input does; no software round trip is needed per projection. Darks and flats
    are then taken with the camera's own trigger (AUTO, at its frame rate).
    """

    angular_step = Quantity(q.deg, help="angular_range / num_projections")
    hardware_trigger = Parameter(
        *stored("hardware_trigger", boolean), check=IDLE,
        help="True: hardware-timed frames: the tomography_motor steps and triggers the camera "
        "itself for the projections (its trigger_output wired to the camera's "
        "trigger_input, trigger source EXTERNAL, a dwell of exposure_time per angle) and "
        "the camera triggers itself for darks and flats (AUTO, at its frame_rate); False: "
        "every frame is a software trigger (and each projection a software move)")

    async def __ainit__(
        self,
        walker: Any,
        flat_motor: LinearMotor,
        tomography_motor: RotationMotor,
        radio_position: pint.Quantity,
        flat_position: pint.Quantity,
        camera: Camera,
        num_flats: int = 200,
        num_darks: int = 200,
        num_projections: int = 3000,
        angular_range: pint.Quantity = 180 * q.deg,
        start_angle: pint.Quantity = 0 * q.deg,
        separate_scans: bool = True,
        *,
        hardware_trigger: bool = False,
    ) -> None:
        self._hardware_trigger = boolean(hardware_trigger)
        await super().__ainit__(walker, flat_motor, tomography_motor, radio_position,
                                flat_position, camera, num_flats, num_darks, num_projections,
                                angular_range, start_angle, separate_scans)

    async def _get_angular_step(self) -> pint.Quantity:
        return self._angular_range / max(self._num_projections, 1)

    def _hardware_timed(self) -> bool:
        return self._hardware_trigger

    async def _step(self, index: int) -> dict[str, Any]:
        angle = self._angle(index)
        await self._tomography_motor.set_position(angle)
        return {"rotation_angle": float(angle.to(q.deg).magnitude)}

    async def _projections(self) -> AsyncIterator[ImageWithMetadata]:
        if self._hardware_trigger:
            producer = self._produce_triggered(self._num_projections, self._tomography_motor,
                                               await self._get_angular_step(),
                                               self._projection_info())
        else:
            producer = self._produce_frames(self._num_projections, self._step)
        async for frame in producer:
            yield frame


class ContinuousTomography(Tomography):
    """Tomography with the sample rotating at constant ``velocity`` while the camera records
    at its frame rate (the rotation covers ``angular_range`` in ``num_projections`` frames)."""

    velocity = Quantity(q.deg / q.s, help="Rotation velocity during the scan "
                        "(angular_range * camera frame rate / num_projections)")

    async def _get_velocity(self) -> pint.Quantity:
        rate = await self._camera.get_frame_rate()
        return (self._angular_range * rate / max(self._num_projections, 1)).to(q.deg / q.s)

    async def _start_motion(self) -> None:
        await self._tomography_motor.set_velocity(await self._get_velocity())

    async def _stop_motion(self) -> None:
        await self._tomography_motor.stop()

    async def _projections(self) -> AsyncIterator[ImageWithMetadata]:
        await self._start_motion()
        try:
            async for frame in self._produce_continuous(self._num_projections,
                                                         self._projection_info()):
                yield frame
        finally:
            await self._stop_motion()


class SpiralMixin(Tomography):
    """Adds a ``vertical_motor`` translating the sample along the rotation axis by
    ``vertical_shift_per_tomogram`` per ``angular_range``, from ``start_position_vertical``,
    until ``sample_height`` is covered (``num_tomograms`` rotations)."""

    start_position_vertical = Quantity(q.mm, *stored("start_position_vertical"), check=IDLE,
                                       help="Position of the vertical_motor at the start")
    sample_height = Quantity(q.mm, *stored("sample_height"), check=IDLE,
                             help="Height of the sample")
    vertical_shift_per_tomogram = Quantity(
        q.mm, *stored("vertical_shift_per_tomogram"), check=IDLE,
        help="Travel of the vertical_motor during one angular_range")
    num_tomograms = Parameter(help="ceil(sample_height / vertical_shift_per_tomogram)")

    async def __ainit__(
        self,
        walker: Any,
        flat_motor: LinearMotor,
        tomography_motor: RotationMotor,
        vertical_motor: LinearMotor,
        radio_position: pint.Quantity,
        flat_position: pint.Quantity,
        camera: Camera,
        start_position_vertical: pint.Quantity,
        sample_height: pint.Quantity,
        vertical_shift_per_tomogram: pint.Quantity,
        num_flats: int = 200,
        num_darks: int = 200,
        num_projections: int = 3000,
        angular_range: pint.Quantity = 180 * q.deg,
        start_angle: pint.Quantity = 0 * q.deg,
        separate_scans: bool = True,
    ) -> None:
        self._vertical_motor = vertical_motor
        self._start_position_vertical = self["start_position_vertical"].parameter.convert(
            start_position_vertical)
        self._sample_height = self["sample_height"].parameter.convert(sample_height)
        shift = self["vertical_shift_per_tomogram"].parameter.convert(vertical_shift_per_tomogram)
        if shift.magnitude == 0:
            raise ValueError("vertical_shift_per_tomogram must not be zero")
        self._vertical_shift_per_tomogram = shift
        await super().__ainit__(walker, flat_motor, tomography_motor, radio_position,
                                flat_position, camera, num_flats, num_darks, num_projections,
                                angular_range, start_angle, separate_scans)

    async def _get_num_tomograms(self) -> int:
        ratio = abs(float((self._sample_height / self._vertical_shift_per_tomogram)
                          .to(q.dimensionless).magnitude))
        return max(1, math.ceil(ratio - 1e-9))

    def _vertical(self, index: int) -> pint.Quantity:
        per_frame = self._vertical_shift_per_tomogram / max(self._num_projections, 1)
        return self._start_position_vertical + index * per_frame

    async def _prepare_radios(self) -> None:
        await run_together([
            self._flat_motor.set_position(self._radio_position),
            self._tomography_motor.set_position(self._start_angle),
            self._vertical_motor.set_position(self._start_position_vertical),
            self.start_sample_exposure(),
        ])


def _software_only(value: Any) -> bool:
    if boolean(value):
        raise ValueError("a stepped spiral tomography moves two motors per projection; "
                         "it has no hardware-timed variant (hardware_trigger stays False)")
    return False


class SteppedSpiralTomography(SpiralMixin, SteppedTomography):
    """Stepped tomography with the sample also stepped along the rotation axis: a helix of
    ``num_projections * num_tomograms`` projections."""

    hardware_trigger = Parameter(*stored("hardware_trigger", _software_only), check=IDLE,
                                 help="Always False: two motors step per projection")

    async def _step(self, index: int) -> dict[str, Any]:
        angle, height = self._angle(index), self._vertical(index)
        await run_together([self._tomography_motor.set_position(angle),
                            self._vertical_motor.set_position(height)])
        return {"rotation_angle": float(angle.to(q.deg).magnitude),
                "vertical_position": float(height.to(q.mm).magnitude)}

    async def _projections(self) -> AsyncIterator[ImageWithMetadata]:
        total = self._num_projections * await self._get_num_tomograms()
        async for frame in self._produce_frames(total, self._step):
            yield frame


class ContinuousSpiralTomography(SpiralMixin, ContinuousTomography):
    """Continuous tomography with the sample also translated at constant velocity along the
    rotation axis (a helical scan of ``num_projections * num_tomograms`` frames)."""

    vertical_velocity = Quantity(q.mm / q.s, help="Velocity of the vertical_motor during the "
                                 "scan (vertical_shift_per_tomogram * frame rate / "
                                 "num_projections)")

    async def _get_vertical_velocity(self) -> pint.Quantity:
        rate = await self._camera.get_frame_rate()
        velocity = self._vertical_shift_per_tomogram * rate / max(self._num_projections, 1)
        return velocity.to(q.mm / q.s)

    def _projection_info(self) -> Callable[[int], dict[str, Any]]:
        angles = super()._projection_info()

        def info(index: int) -> dict[str, Any]:
            return {**angles(index),
                    "vertical_position": float(self._vertical(index).to(q.mm).magnitude)}

        return info

    async def _start_motion(self) -> None:
        await run_together([
            self._tomography_motor.set_velocity(await self._get_velocity()),
            self._vertical_motor.set_velocity(await self._get_vertical_velocity()),
        ])

    async def _stop_motion(self) -> None:
        await asyncio.gather(self._tomography_motor.stop(), self._vertical_motor.stop())

    async def _projections(self) -> AsyncIterator[ImageWithMetadata]:
        total = self._num_projections * await self._get_num_tomograms()
        await self._start_motion()
        try:
            async for frame in self._produce_continuous(total, self._projection_info()):
                yield frame
        finally:
            await self._stop_motion()


class GratingInterferometryStepping(ImagingExperiment):
    """Grating-based phase contrast: the grating is stepped by ``stepping_motor`` over
    ``num_periods`` periods in ``num_steps_per_period`` steps each, once without the sample
    (``reference_stepping``, flat_motor at ``flat_position``) and once with it
    (``object_stepping``, at ``radio_position``), after ``num_darks`` dark images.

    Attach :class:`~experiments.addons.PhaseGratingSteppingFourierProcessing` to get
    intensity, visibility and differential phase.
    """

    num_darks = Parameter(*stored("num_darks", count), check=IDLE,
                          help="Number of dark-field images")
    radio_position = Quantity(q.mm, *stored("radio_position"), check=IDLE,
                              help="Position of flat_motor with the sample in the beam")
    flat_position = Quantity(q.mm, *stored("flat_position"), check=IDLE,
                             help="Position of flat_motor with the sample out of the beam")
    grating_period = Quantity(q.um, *stored("grating_period"), check=IDLE,
                              help="Period of the stepped grating")
    stepping_start_position = Quantity(q.um, *stored("stepping_start_position"), check=IDLE,
                                       help="First position of the stepping_motor")
    num_periods = Parameter(*stored("num_periods", positive_count), check=IDLE,
                            help="Number of grating periods sampled")
    num_steps_per_period = Parameter(*stored("num_steps_per_period", positive_count),
                                     check=IDLE, help="Number of steps per grating period")
    propagation_distance = Quantity(q.mm, *stored("propagation_distance"), check=IDLE,
                                    help="Distance between sample and analyser grating (used "
                                    "to turn the phase into a deflection angle)")

    async def __ainit__(
        self,
        walker: Any,
        camera: Camera,
        flat_motor: LinearMotor,
        stepping_motor: LinearMotor,
        flat_position: pint.Quantity,
        radio_position: pint.Quantity,
        grating_period: pint.Quantity,
        num_darks: int,
        stepping_start_position: pint.Quantity,
        num_periods: int,
        num_steps_per_period: int,
        propagation_distance: pint.Quantity,
        separate_scans: bool = True,
    ) -> None:
        self._flat_motor = flat_motor
        self._stepping_motor = stepping_motor
        convert = {name: self[name].parameter.convert for name in (
            "flat_position", "radio_position", "grating_period", "stepping_start_position",
            "propagation_distance")}
        self._flat_position = convert["flat_position"](flat_position)
        self._radio_position = convert["radio_position"](radio_position)
        self._grating_period = convert["grating_period"](grating_period)
        self._stepping_start_position = convert["stepping_start_position"](
            stepping_start_position)
        self._propagation_distance = convert["propagation_distance"](propagation_distance)
        self._num_darks = count(num_darks)
        self._num_periods = positive_count(num_periods)
        self._num_steps_per_period = positive_count(num_steps_per_period)
        acquisitions = [
            await Acquisition("darks", self._take_darks),
            await Acquisition("reference_stepping", self._take_reference),
            await Acquisition("object_stepping", self._take_object),
        ]
        await super().__ainit__(acquisitions, walker, camera, separate_scans)

    def stepping_positions(self) -> np.ndarray:
        """The grating positions of one stepping scan (µm)."""
        step = float((self._grating_period / self._num_steps_per_period).to(q.um).magnitude)
        start = float(self._stepping_start_position.to(q.um).magnitude)
        return start + step * np.arange(self._num_periods * self._num_steps_per_period)

    async def _step(self, index: int) -> dict[str, Any]:
        position = float(self.stepping_positions()[index])
        await self._stepping_motor.set_position(position * q.um)
        return {"stepping_position": position}

    async def _stepping(self) -> AsyncIterator[ImageWithMetadata]:
        number = self._num_periods * self._num_steps_per_period
        async for frame in self._produce_frames(number, self._step):
            yield frame

    async def _prepare_flats(self) -> None:
        # Moving and opening at once: no frame is taken before both are done.
        await run_together([self._flat_motor.set_position(self._flat_position),
                            self.start_sample_exposure()])

    async def _finish_flats(self) -> None:
        await self.stop_sample_exposure()

    async def _prepare_radios(self) -> None:
        await run_together([self._flat_motor.set_position(self._radio_position),
                            self.start_sample_exposure()])

    async def _finish_radios(self) -> None:
        await self.stop_sample_exposure()

    async def _take_reference(self) -> AsyncIterator[ImageWithMetadata]:
        await self._prepare_flats()
        async with self._finishing(self._finish_flats):
            async for frame in self._stepping():
                yield frame

    async def _take_object(self) -> AsyncIterator[ImageWithMetadata]:
        await self._prepare_radios()
        async with self._finishing(self._finish_radios):
            async for frame in self._stepping():
                yield frame


__all__ = [
    "ContinuousSpiralTomography",
    "ContinuousTomography",
    "GratingInterferometryStepping",
    "ImagingExperiment",
    "Radiography",
    "SpiralMixin",
    "SteppedSpiralTomography",
    "SteppedTomography",
    "Tomography",
    "frames",
    "tomo_angular_step",
    "tomo_max_speed",
    "tomo_projections_number",
]
