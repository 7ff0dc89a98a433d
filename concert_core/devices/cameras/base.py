"""Cameras: the :class:`Camera` family and the :class:`BufferedMixin` for cameras with memory.

A camera is set up through its parameters (exposure time, frame rate, trigger source, region of
interest) while in ``standby``, records frames between :meth:`Camera.start_recording` and
:meth:`Camera.stop_recording` (state ``recording``) and hands them out with :meth:`Camera.grab`
or :meth:`Camera.stream`. How frames are triggered is the ``trigger_source``:

* ``AUTO``: the camera triggers itself at ``frame_rate`` from the start of the recording;
* ``SOFTWARE``: every :meth:`Camera.trigger` exposes exactly one frame;
* ``EXTERNAL``: a hardware signal (e.g. TTL) triggers each frame; ``trigger_input``
  connects the camera to a simulated trigger line (:mod:`concert_core.dataplane.trigger`),
  e.g. a motor's ``trigger_output`` pulsed by its ``step_scan``.

A camera with internal memory (:class:`BufferedMixin`) can afterwards read the recorded frames
out of that memory (state ``readout``). This module declares; simulated cameras are in
:mod:`concert_core.devices.cameras.dummy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

from concert_core.coroutines.base import background, cancel_and_wait, run_in_executor
from concert_core.dataplane.sender import ImageSender, resolve_endpoint
from concert_core.dataplane.trigger import TriggerInput
from concert_core.devices.base import Device
from concert_core.errors import ConcertError, TransitionNotAllowed
from concert_core.helpers import Bunch, ImageWithMetadata
from concert_core.parameter import Parameter, Quantity, Selection
from concert_core.quantities import q
from concert_core.state import State, check, transition

LOG = logging.getLogger(__name__)

TRIGGER_SOURCES = ("AUTO", "SOFTWARE", "EXTERNAL")
#: A converted frame larger than this is converted in a worker thread.
_CONVERT_IN_THREAD_BYTES = 1 << 20
#: Frames a camera sending to its ``data_endpoint`` may have grabbed but not yet sent.
SEND_AHEAD = 8
#: Shortest interval between two announcements of the frame counter (s).
_COUNTER_PERIOD = 0.05

#: Allocates the array a frame is made in: ``await allocate(shape, dtype)``.
Allocator = Callable[[tuple[int, ...], np.dtype], Awaitable[np.ndarray]]


async def new_frame(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The default frame allocator: a new, uninitialised array."""
    return np.empty(shape, dtype)


class CameraError(ConcertError):
    """A camera could not deliver what was asked (no frame in time, recording stopped, ...)."""


class FramesExhaustedError(CameraError):
    """There is no further frame: a finite source (file sequence, camera memory) is used up."""


def identity(frame: np.ndarray) -> np.ndarray:
    """The default :attr:`Camera.convert`: the frame unchanged."""
    return frame


# -- limits of the region of interest: the ROI must stay on the sensor --------------------------
async def _x0_upper(camera: Camera) -> Any:
    return await camera.get_sensor_width() - await camera.get_roi_width()


async def _y0_upper(camera: Camera) -> Any:
    return await camera.get_sensor_height() - await camera.get_roi_height()


async def _width_upper(camera: Camera) -> Any:
    return await camera.get_sensor_width() - await camera.get_roi_x0()


async def _height_upper(camera: Camera) -> Any:
    return await camera.get_sensor_height() - await camera.get_roi_y0()


def _frames_grabbed(camera: Camera) -> int:
    return camera._frames_grabbed


_STANDBY = check(source=["standby"])
_NOT_RECORDING = check(source=["standby", "readout", "error"])


class Camera(Device):
    """Base of remotely controllable cameras.

    Implementations provide ``_get_/_set_`` accessors of the parameters and the low-level
    coroutines ``_record_real`` (start recording), ``_stop_real`` (stop recording),
    ``_trigger_real`` (a software trigger) and ``_grab_real`` (return the next frame as an
    ndarray, preferably an :class:`ImageWithMetadata` carrying ``index``, ``exposure_time``,
    ``timestamp``, ``roi`` and ``trigger_source``).

    ``convert`` is a callable applied to every grabbed frame (identity by default), e.g.
    ``camera.convert = np.fliplr``. Implementations that make frames in memory should
    allocate them with ``await self._allocate(shape, dtype)``: while frames are sent to
    ``data_endpoint`` with ``shared_memory``, that is a slot of the sender's ring, so a
    frame is written once and sent without a copy.
    """

    #: Names of the trigger sources: ``camera.trigger_sources.SOFTWARE == "SOFTWARE"``.
    trigger_sources = Bunch(TRIGGER_SOURCES)

    state = State(
        default="standby",
        help="standby: idle; recording: acquiring frames; readout: reading frames out of the "
        "camera memory; error: failed (see Status)",
    )
    exposure_time = Quantity(q.s, lower=0 * q.s, help="Exposure time of one frame")
    frame_rate = Quantity(
        1 / q.s, lower=0 / q.s, help="Frames per second recorded with the AUTO trigger source"
    )
    trigger_source = Selection(
        TRIGGER_SOURCES,
        check=_STANDBY,
        help="What triggers a frame: AUTO (the camera itself at frame_rate), SOFTWARE "
        "(trigger()), EXTERNAL (a hardware signal); changed in standby only",
    )
    roi_x0 = Quantity(
        q.pixel, lower=0 * q.pixel, external_upper_getter=_x0_upper, check=_STANDBY,
        help="First column of the region of interest (0 = sensor edge); changed in standby only",
    )
    roi_y0 = Quantity(
        q.pixel, lower=0 * q.pixel, external_upper_getter=_y0_upper, check=_STANDBY,
        help="First row of the region of interest (0 = sensor edge); changed in standby only",
    )
    roi_width = Quantity(
        q.pixel, lower=1 * q.pixel, external_upper_getter=_width_upper, check=_STANDBY,
        help="Width of the region of interest (frame width); changed in standby only",
    )
    roi_height = Quantity(
        q.pixel, lower=1 * q.pixel, external_upper_getter=_height_upper, check=_STANDBY,
        help="Height of the region of interest (frame height); changed in standby only",
    )
    sensor_width = Quantity(q.pixel, help="Number of pixel columns of the sensor")
    sensor_height = Quantity(q.pixel, help="Number of pixel rows of the sensor")
    sensor_pixel_width = Quantity(q.um, help="Physical width of one sensor pixel")
    sensor_pixel_height = Quantity(q.um, help="Physical height of one sensor pixel")
    buffered = Parameter(
        check=_STANDBY,
        help="True: frames recorded faster than grabbed wait in the camera's ring buffer and "
        "are grabbed in order; False: grab returns the newest frame (older ones are dropped)",
    )
    frames_grabbed = Parameter(
        fget=_frames_grabbed, help="Number of frames grabbed since recording (or readout) started"
    )
    data_endpoint = Parameter(
        help="ZMQ endpoint grab_send/stream_send send frames to ('' = off). The camera binds "
        "it (port 0 picks a free port; reading gives the actual endpoint) and receivers, such "
        "as a walker's WriteSequence, connect to it. Frames are sent reliably (nothing dropped)"
    )
    trigger_input = Parameter(
        check=_NOT_RECORDING,
        help="ZMQ endpoint of the trigger output the camera listens to ('' = not connected), "
        "e.g. a motor's trigger_output: a simulated TTL cable. Each pulse while recording with "
        "trigger_source EXTERNAL exposes one frame; other pulses are ignored. Writing connects "
        "and answers once the output has answered (at most 1 s); not changed while recording"
    )
    shared_memory = Parameter(
        help="True: frames sent to data_endpoint travel in shared memory, only their headers "
        "over ZMQ (receivers on this host only; the camera makes each frame straight in a "
        "slot the receiver writes from). A slot is busy until the receiver has dropped its "
        "frame. Not changed while frames are sent"
    )

    async def __ainit__(self) -> None:
        await super().__ainit__()
        self.convert: Callable[[np.ndarray], Any] = identity
        self._frames_grabbed = 0
        self._counter_announced = 0.0
        self._counter_pending = False
        self._data_sender: ImageSender | None = None
        self._sending = False
        self._shared_memory = False
        self._allocate: Allocator = new_frame
        self._trigger_line: TriggerInput | None = None
        self._trigger_finalizer: weakref.finalize | None = None
        #: Trigger-line pulses that exposed no frame (not recording with EXTERNAL).
        self.pulses_ignored = 0
        # The ROI limits depend on each other: tell limit observers (Tango min/max) on change.
        ref = weakref.ref(self)
        for name, other in (("roi_x0", "roi_width"), ("roi_width", "roi_x0"),
                            ("roi_y0", "roi_height"), ("roi_height", "roi_y0")):
            self[name].subscribe(_limits_notifier(ref, other))

    # -- recording -------------------------------------------------------------------------
    @background
    @check(source="standby", target="recording")
    async def start_recording(self) -> None:
        """Start recording frames (standby -> recording)."""
        await self._start_recording()

    @transition()  # errors only: a cancelled start leaves the camera in standby
    async def _start_recording(self) -> None:
        self._reset_counter()
        await self._record_real()
        self["state"].set_software("recording")

    @background
    @check(source="recording", target="standby")
    async def stop_recording(self) -> None:
        """Stop recording frames (recording -> standby)."""
        await self._stop_recording()

    @transition(target="standby")
    async def _stop_recording(self) -> None:
        await self._stop_real()

    @contextlib.asynccontextmanager
    async def recording(self) -> AsyncIterator[Camera]:
        """``async with camera.recording():`` records inside the block and stops after it."""
        await self.start_recording()
        try:
            yield self
        finally:
            if await self.get_state() == "recording":
                await self.stop_recording()

    @check(source="recording")
    async def trigger(self) -> None:
        """Expose one frame; only while recording with the SOFTWARE trigger source."""
        source = await self.get_trigger_source()
        if source != "SOFTWARE":
            raise TransitionNotAllowed(
                f"trigger() needs trigger_source 'SOFTWARE', it is {source!r}"
            )
        await self._trigger_real()

    # -- frames ------------------------------------------------------------------------------
    @check(source=["recording", "readout"])
    async def grab(self) -> ImageWithMetadata:
        """Return the next frame (with ``metadata``), converted by :attr:`convert`.

        Waits for the frame where the camera has not recorded it yet. The array is new and
        belongs to the caller.
        """
        frame = await self._grab_checked()
        self._frames_grabbed += 1
        if not isinstance(frame, ImageWithMetadata):
            frame = ImageWithMetadata(frame, {"index": self._frames_grabbed - 1})
        convert = self.convert
        if convert is not identity:
            if frame.nbytes >= _CONVERT_IN_THREAD_BYTES:
                converted = await run_in_executor(convert, frame)
            else:
                converted = convert(frame)
            if not isinstance(converted, ImageWithMetadata):
                converted = ImageWithMetadata(converted, frame.metadata)
            frame = converted
        self._announce_counter()
        return frame

    @transition()  # a StateError of the implementation drives the state (e.g. to 'error')
    async def _grab_checked(self) -> np.ndarray:
        return await self._grab_real()

    async def stream(self) -> AsyncIterator[ImageWithMetadata]:
        """Yield grabbed frames as long as the camera records (an async generator)."""
        while await self.get_state() == "recording":
            try:
                frame = await self.grab()
            except FramesExhaustedError:
                return
            except (CameraError, TransitionNotAllowed):
                if await self.get_state() != "recording":
                    return  # recording stopped while waiting for the frame
                raise
            yield frame

    # -- sending frames to a data-plane endpoint ---------------------------------------------
    async def _get_data_endpoint(self) -> str:
        sender = self._data_sender
        return sender.endpoint if sender is not None else ""

    async def _set_data_endpoint(self, endpoint: str) -> None:
        if self._sending:
            raise TransitionNotAllowed("data_endpoint cannot change while frames are sent")
        endpoint = str(endpoint).strip()
        if endpoint:
            resolve_endpoint(endpoint, bind=True)  # ValueError for a malformed endpoint
        old, self._data_sender = self._data_sender, None
        if old is not None:
            old.close(linger=0)
        if endpoint:
            self._data_sender = ImageSender(endpoint, reliable=True, bind=True,
                                            shared_memory=self._shared_memory)

    async def _get_shared_memory(self) -> bool:
        return self._shared_memory

    async def _set_shared_memory(self, value: bool) -> None:
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"shared_memory must be True or False, got {value!r}")
        if self._sending:
            raise TransitionNotAllowed("shared_memory cannot change while frames are sent")
        self._shared_memory = bool(value)
        if self._data_sender is not None:
            self._data_sender.shared_memory = self._shared_memory

    # -- the trigger line (a simulated TTL input) --------------------------------------------
    async def _get_trigger_input(self) -> str:
        line = self._trigger_line
        return line.endpoint if line is not None else ""

    async def _set_trigger_input(self, endpoint: str) -> None:
        endpoint = str(endpoint).strip()
        old = self._trigger_line
        if old is not None and endpoint and resolve_endpoint(endpoint, False) == old.endpoint:
            return  # connected there already
        # A malformed endpoint raises ValueError here, before anything changes. Opening the
        # new line before closing the old one is safe: its output's answer, awaited below,
        # says it has the new line, whatever it still counts of the old one.
        line = TriggerInput(endpoint, _pulse_receiver(weakref.ref(self))) if endpoint else None
        if old is not None:
            self._trigger_finalizer.detach()
        self._trigger_line = line
        # The line ends with the camera: nothing of it keeps the camera alive.
        self._trigger_finalizer = weakref.finalize(self, line.close) if line else None
        if old is not None:
            await old.aclose()
        if line is not None and not await line.wait_connected():
            LOG.info("%s: no trigger output answers at %s yet", type(self).__name__,
                     line.endpoint)

    async def _trigger_pulse(self, index: int, sent: float) -> None:
        """Pulse ``index`` on the trigger line, sent at ``sent`` (seconds since the epoch):
        expose a frame, or count and log the pulse ignored."""
        if not await self._external_pulse_real(sent):
            self.pulses_ignored += 1
            LOG.debug("%s: trigger pulse %d ignored (not recording with trigger_source "
                      "EXTERNAL)", type(self).__name__, index)

    def _claim_sender(self, what: str) -> ImageSender:
        sender = self._data_sender
        if sender is None:
            raise CameraError(f"{what} needs a data_endpoint (it is empty)")
        if self._sending:
            raise TransitionNotAllowed(f"{what}: frames are being sent already")
        self._sending = True
        return sender

    @background
    async def grab_send(self, num: int) -> None:
        """Grab ``num`` frames and send them to ``data_endpoint``, then end the stream.

        From standby the camera records for the duration; while recording (or in readout)
        the next ``num`` frames are taken. Frames go out reliably: a receiver that is
        missing or stops reading turns into a ``DataPlaneTimeout``.
        """
        if num < 0:
            raise ValueError(f"grab_send needs num >= 0, got {num}")
        state = await self.get_state()
        if state not in ("standby", "recording", "readout"):
            raise TransitionNotAllowed(f"grab_send is not allowed in state {state!r}")
        sender = self._claim_sender("grab_send")
        try:
            if state == "standby":
                async with self.recording():
                    await self._send_frames(sender, num)
            else:
                self["state"].notify(state)  # started: a Tango call returns at once
                await self._send_frames(sender, num)
        finally:
            self._sending = False

    @background
    @check(source="recording")
    async def stream_send(self) -> None:
        """Send every frame to ``data_endpoint`` while the camera records; the stream
        ends when the recording stops."""
        sender = self._claim_sender("stream_send")
        try:
            self["state"].notify("recording")  # started: a Tango call returns at once
            await self._send_frames(sender, None)
        finally:
            self._sending = False

    async def _send_frames(self, sender: ImageSender, num: int | None) -> None:
        """Grab ``num`` frames (``None``: while recording) and send them. Grabbing runs up
        to :data:`SEND_AHEAD` frames ahead of sending, so that a receiver that connects
        late (a writer starting) or stalls briefly costs a running camera no frames."""
        self._allocate = sender.buffer  # frames are made where they are sent from
        room = asyncio.Semaphore(SEND_AHEAD)
        grabbed: asyncio.Queue[ImageWithMetadata | None] = asyncio.Queue()

        async def grab_all() -> None:
            frames = self.stream() if num is None else (await self.grab() for _ in range(num))
            async with contextlib.aclosing(frames):
                await room.acquire()
                async for frame in frames:
                    grabbed.put_nowait(frame)
                    await room.acquire()

        grabbing = asyncio.ensure_future(grab_all())
        grabbing.add_done_callback(lambda _: grabbed.put_nowait(None))  # ended, or failed
        try:
            while (frame := await grabbed.get()) is not None:
                await sender.send(frame)
                del frame  # a slot in shared memory goes back once the receiver is done
                room.release()
            await grabbing  # a failed grab ends the stream after the frames before it
            await sender.end()
            # The final count is announced before the state leaves recording, so whoever
            # sees the end sees every frame counted (the counter is otherwise throttled).
            self["frames_grabbed"].notify(self._frames_grabbed)
        except BaseException:
            await cancel_and_wait(grabbing)
            sender.restart()  # no end: the receiver must not take a partial stream as whole
            raise
        finally:
            self._allocate = new_frame

    # -- frame counter -----------------------------------------------------------------------
    def _reset_counter(self) -> None:
        self._frames_grabbed = 0
        self["frames_grabbed"].notify(0)
        self._counter_announced = time.monotonic()

    def _announce_counter(self) -> None:
        """Notify the frame counter at most every 50 ms; the last value always follows."""
        now = time.monotonic()
        if now - self._counter_announced >= _COUNTER_PERIOD:
            self._counter_announced = now
            self["frames_grabbed"].notify(self._frames_grabbed)
        elif not self._counter_pending:
            self._counter_pending = True
            asyncio.get_running_loop().call_later(
                _COUNTER_PERIOD, _late_counter_notify, weakref.ref(self)
            )

    # -- to implement ------------------------------------------------------------------------
    async def _record_real(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot start recording")

    async def _stop_real(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot stop recording")

    async def _trigger_real(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be triggered")

    async def _grab_real(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} cannot grab")

    async def _external_pulse_real(self, sent: float) -> bool:
        """Expose a frame on a trigger-line pulse sent at ``sent`` (seconds since the
        epoch); False if the camera ignores it."""
        raise NotImplementedError(f"{type(self).__name__} cannot take trigger-line pulses")


def _limits_notifier(ref: weakref.ref, other: str) -> Callable[[Any, Any], None]:
    def changed(_value: Any, _new: Any) -> None:
        camera = ref()
        if camera is not None:
            camera[other].notify_limits()

    return changed


def _pulse_receiver(ref: weakref.ref) -> Callable[[int, float], Any]:
    async def on_pulse(index: int, sent: float) -> None:
        camera = ref()
        if camera is not None:
            await camera._trigger_pulse(index, sent)

    return on_pulse


def _late_counter_notify(ref: weakref.ref) -> None:
    camera = ref()
    if camera is not None:
        camera._counter_pending = False
        camera._counter_announced = time.monotonic()
        camera["frames_grabbed"].notify(camera._frames_grabbed)


class BufferedMixin(Device):
    """A camera that keeps recorded frames in its memory, read out after recording.

    ``start_readout()`` (standby -> readout) makes :meth:`Camera.grab` return the recorded
    frames in order, oldest first; when all are read ``grab`` raises
    :class:`FramesExhaustedError`. ``stop_readout()`` returns to standby. Implementations
    provide ``_get_frames_in_buffer``, ``_start_readout_real``, ``_stop_readout_real`` and
    ``_readout_real`` (the next buffered frame).
    """

    frames_in_buffer = Parameter(help="Number of frames held in the camera memory")

    @background
    @check(source="standby", target="readout")
    async def start_readout(self) -> None:
        """Start reading frames out of the camera memory (standby -> readout)."""
        await self._start_readout()

    @transition()  # errors only: a cancelled start leaves the camera in standby
    async def _start_readout(self) -> None:
        self._reset_counter()
        await self._start_readout_real()
        self["state"].set_software("readout")

    @background
    @check(source="readout", target="standby")
    async def stop_readout(self) -> None:
        """Stop reading out (readout -> standby)."""
        await self._stop_readout()

    @transition(target="standby")
    async def _stop_readout(self) -> None:
        await self._stop_readout_real()

    @contextlib.asynccontextmanager
    async def readout(self) -> AsyncIterator[BufferedMixin]:
        """``async with camera.readout():`` reads out inside the block and stops after it."""
        await self.start_readout()
        try:
            yield self
        finally:
            if await self.get_state() == "readout":
                await self.stop_readout()

    async def _grab_real(self) -> np.ndarray:
        if await self.get_state() == "readout":
            return await self._readout_real()
        return await super()._grab_real()



__all__ = [
    "TRIGGER_SOURCES",
    "BufferedMixin",
    "Camera",
    "CameraError",
    "FramesExhaustedError",
    "identity",
    "new_frame",
]
