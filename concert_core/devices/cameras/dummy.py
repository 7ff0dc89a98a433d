"""Simulated cameras that behave like hardware in time: :class:`Camera`, :class:`BufferedCamera`
and :class:`FileCamera`.

Timing (all three):

* ``AUTO``: frame *k* of a recording is complete at ``start + (k + 1) * period`` with
  ``period = max(1 / frame_rate, exposure_time)``. :meth:`grab` returns the oldest frame not
  grabbed yet and waits for the next one if there is none. With ``buffered = False`` it returns
  the newest complete frame (older ones are dropped, the ``index`` metadata shows the gap); with
  ``buffered = True`` up to ``ring_size`` frames wait in a ring buffer and are grabbed in order.
  Changing ``exposure_time`` or ``frame_rate`` while recording restarts the frame clock; frames
  not yet grabbed are dropped.
* ``SOFTWARE``: each :meth:`trigger` exposes exactly one frame, complete ``exposure_time`` after
  the trigger (or after the previous triggered frame). :meth:`grab` returns the triggered frames
  in order and waits until the frame is exposed; without a pending trigger it waits up to
  ``grab_timeout`` for one and then raises :class:`CameraError`.
* ``EXTERNAL``: as SOFTWARE, but the frames are triggered by the public simulation helper
  :meth:`external_trigger` (standing in for the TTL signal) or by the pulses on the trigger
  line (``trigger_input``); ``trigger()`` is refused. A pulse's exposure starts when it was
  sent, as on a cable, not when this process got to the message: a camera held up by a
  busy host catches up instead of adding the delay to every frame. A sending time in the
  future or more than :data:`MAX_PULSE_DELAY` back (another host's clock) counts as the
  time of arrival.

Fault injection (:meth:`inject_fault`): ``"grab"`` = the next grab raises ``StateError`` and the
camera goes to ``error`` (recording stops); ``"start"`` = the next ``start_recording`` fails with
``StateError`` and the camera goes to ``error``. :meth:`clear_fault` drops pending faults and
brings a camera in ``error`` back to ``standby``.

Performance: the synthetic frames are made in one vectorised pass, ``base + noise``, where
``base`` is the expected image for the current exposure and ROI (cached per configuration) and
``noise`` is read cyclically, from a random offset, out of a noise bank precomputed once per
intensity level (2**20 samples, small enough to stay in the CPU cache; Poisson noise of the mean
intensity, Gaussian-approximated above 30 counts; every pixel gets the noise of the frame's mean
level, not of its own). Large frames are made in a worker thread.
"""

from __future__ import annotations

import asyncio
import glob
import math
import os
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import pint
import tifffile

from concert_core.coroutines.base import run_in_executor
from concert_core.devices.cameras import base
from concert_core.devices.cameras.base import CameraError, FramesExhaustedError
from concert_core.devices.simulation import SimulatedDevice
from concert_core.errors import StateError, UnitError
from concert_core.helpers import ImageWithMetadata
from concert_core.quantities import q

#: Fault kinds of the dummy cameras.
FAULTS = {
    "grab": "the next grab fails with StateError, the camera goes to 'error' (recording stops)",
    "start": "the next start_recording fails with StateError, the camera goes to 'error'",
}
FAULT_KINDS = tuple(FAULTS)
#: Frames of at least this many bytes are produced in a worker thread.
_THREAD_BYTES = 1 << 20
#: Distinct noise samples in a bank (read cyclically to cover a frame).
_UNIQUE_NOISE = 1 << 20
#: Above this mean count the Poisson noise is drawn from its Gaussian approximation.
_GAUSSIAN_ABOVE = 30.0
_MAX_PENDING_TRIGGERS = 100_000
#: Seconds a trigger-line pulse may have waited for this process and still expose from the
#: time it was sent; an older (or future) sending time is another host's clock.
MAX_PULSE_DELAY = 0.1


def _quantity(value: Any, default: pint.Quantity, unit: pint.Unit, what: str) -> float:
    """``value`` (or ``default``) as a magnitude in ``unit``; ``UnitError`` if it cannot be."""
    if value is None:
        value = default
    if isinstance(value, str):
        value = q.Quantity(value)
    if not isinstance(value, pint.Quantity):
        raise UnitError(f"{what}: {value!r} needs a unit convertible to {unit:~}")
    try:
        return float(value.to(unit).magnitude)
    except pint.DimensionalityError:
        raise UnitError(f"{what}: {value:~} cannot be expressed in {unit:~}") from None


def _pixels(value: pint.Quantity, what: str) -> int:
    magnitude = float(value.to(q.pixel).magnitude)
    if magnitude != int(magnitude):
        raise ValueError(f"{what} must be a whole number of pixels, got {value:~}")
    return int(magnitude)


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _SimulatedCamera(SimulatedDevice, base.Camera):
    """Timing, triggering, camera memory and faults shared by the simulated cameras.

    Subclasses implement ``_frame(index, exposure, roi)`` (the pixels of a frame) and may
    override ``_prepare`` (called when recording starts) and ``_check_available``.
    """

    FAULTS = FAULTS

    async def __ainit__(
        self,
        width: int,
        height: int,
        exposure_time: pint.Quantity | None,
        frame_rate: pint.Quantity | None,
        sensor_pixel_width: pint.Quantity | None,
        sensor_pixel_height: pint.Quantity | None,
        buffered: bool,
        grab_timeout: pint.Quantity | None,
        ring_size: int,
    ) -> None:
        await super().__ainit__()
        if width < 1 or height < 1:
            raise ValueError(f"sensor size must be positive, got {width} x {height}")
        if ring_size < 1:
            raise ValueError(f"ring_size must be at least 1, got {ring_size}")
        self._sensor = (int(width), int(height))
        self._roi = (0, 0, int(width), int(height))
        self._exposure = _quantity(exposure_time, 1 * q.ms, q.s, "exposure_time")
        self._rate = _quantity(frame_rate, 100 / q.s, 1 / q.s, "frame_rate")
        if self._exposure < 0 or self._rate <= 0:
            raise ValueError("exposure_time must not be negative and frame_rate must be positive")
        self._pixel_size = (
            _quantity(sensor_pixel_width, 6.5 * q.um, q.um, "sensor_pixel_width"),
            _quantity(sensor_pixel_height, 6.5 * q.um, q.um, "sensor_pixel_height"),
        )
        self._trigger_source = "AUTO"
        self._buffered = bool(buffered)
        self._grab_timeout = _quantity(grab_timeout, 2 * q.s, q.s, "grab_timeout")
        self._ring_size = int(ring_size)
        self._recording = False
        self._waiters: set[asyncio.Future] = set()
        self._grab_mutex: asyncio.Lock | None = None
        self._clock_offset = 0.0
        self._seed = 0
        # AUTO: frame clock anchored at (time, index)
        self._anchor_time = 0.0
        self._anchor_index = 0
        self._next_index = 0
        # SOFTWARE/EXTERNAL: (index, completion time) of triggered frames not yet grabbed
        self._triggered: deque[tuple[int, float]] = deque()
        self._trigger_index = 0
        self._last_ready = 0.0
        # camera memory (BufferedCamera): (index, timestamp, exposure, roi, trigger source)
        self._memory: deque[tuple] = deque(maxlen=0)
        self._trigger_log: deque[tuple] = deque(maxlen=0)
        self._logged_index = 0
        self._memory_cursor = 0
        self._rng = np.random.default_rng()

    # -- parameters --------------------------------------------------------------------------
    async def _get_exposure_time(self) -> pint.Quantity:
        return q.Quantity(self._exposure, q.s)

    async def _set_exposure_time(self, value: pint.Quantity) -> None:
        exposure = float(value.to(q.s).magnitude)
        self._restart_clock(lambda: setattr(self, "_exposure", exposure))

    async def _get_frame_rate(self) -> pint.Quantity:
        return q.Quantity(self._rate, 1 / q.s)

    async def _set_frame_rate(self, value: pint.Quantity) -> None:
        rate = float(value.to(1 / q.s).magnitude)
        if not rate > 0:
            raise ValueError(f"frame_rate must be positive, got {value:~}")
        self._restart_clock(lambda: setattr(self, "_rate", rate))

    async def _get_trigger_source(self) -> str:
        return self._trigger_source

    async def _set_trigger_source(self, value: str) -> None:
        self._trigger_source = value

    async def _get_buffered(self) -> bool:
        return self._buffered

    async def _set_buffered(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"buffered must be True or False, got {value!r}")
        self._buffered = bool(value)

    async def _get_sensor_width(self) -> pint.Quantity:
        return q.Quantity(self._sensor[0], q.pixel)

    async def _get_sensor_height(self) -> pint.Quantity:
        return q.Quantity(self._sensor[1], q.pixel)

    async def _get_sensor_pixel_width(self) -> pint.Quantity:
        return q.Quantity(self._pixel_size[0], q.um)

    async def _get_sensor_pixel_height(self) -> pint.Quantity:
        return q.Quantity(self._pixel_size[1], q.um)

    async def _get_roi_x0(self) -> pint.Quantity:
        return q.Quantity(self._roi[0], q.pixel)

    async def _set_roi_x0(self, value: pint.Quantity) -> None:
        self._set_roi(0, _pixels(value, "roi_x0"))

    async def _get_roi_y0(self) -> pint.Quantity:
        return q.Quantity(self._roi[1], q.pixel)

    async def _set_roi_y0(self, value: pint.Quantity) -> None:
        self._set_roi(1, _pixels(value, "roi_y0"))

    async def _get_roi_width(self) -> pint.Quantity:
        return q.Quantity(self._roi[2], q.pixel)

    async def _set_roi_width(self, value: pint.Quantity) -> None:
        self._set_roi(2, _pixels(value, "roi_width"))

    async def _get_roi_height(self) -> pint.Quantity:
        return q.Quantity(self._roi[3], q.pixel)

    async def _set_roi_height(self, value: pint.Quantity) -> None:
        self._set_roi(3, _pixels(value, "roi_height"))

    def _set_roi(self, which: int, value: int) -> None:
        roi = list(self._roi)
        roi[which] = value
        self._roi = tuple(roi)

    # -- clock -------------------------------------------------------------------------------
    def _period(self) -> float:
        return max(1.0 / self._rate, self._exposure)

    def _completed(self, now: float) -> int:
        """Number of AUTO frames complete at loop time ``now``."""
        return self._anchor_index + int((now - self._anchor_time) / self._period())

    def _restart_clock(self, change: Any) -> None:
        """Apply ``change`` (of exposure or rate); while recording in AUTO re-anchor the clock."""
        if not (self._recording and self._trigger_source == "AUTO"):
            change()
            return
        now = asyncio.get_running_loop().time()
        completed = self._completed(now)
        self._remember_auto(completed)
        change()
        self._anchor_time, self._anchor_index = now, completed
        self._next_index = max(self._next_index, completed)
        self._wake_all()

    def _wall(self, loop_time: float) -> float:
        return loop_time + self._clock_offset

    async def _wait(self, deadline: float) -> None:
        """Sleep until loop time ``deadline`` or until :meth:`_wake_all`."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.add(waiter)
        handle = loop.call_at(deadline, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)
            handle.cancel()

    def _wake_all(self) -> None:
        for waiter in tuple(self._waiters):
            _wake(waiter)

    # -- recording ---------------------------------------------------------------------------
    async def _record_real(self) -> None:
        if self.take_fault("start"):
            raise StateError("error", "injected fault 'start': the camera did not start recording")
        with self.operation():
            await self._prepare()
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._clock_offset = time.time() - now
        self._seed = int(self._rng.integers(1 << 30))
        self._anchor_time, self._anchor_index, self._next_index = now, 0, 0
        self._triggered.clear()
        self._trigger_index = 0
        self._last_ready = now
        self._memory.clear()
        self._trigger_log.clear()
        self._logged_index = 0
        self._recording = True

    async def _stop_real(self) -> None:
        if self._memory.maxlen:
            now = asyncio.get_running_loop().time()
            if self._trigger_source == "AUTO":
                self._remember_auto(self._completed(now))
            else:
                self._memory.extend(
                    (index, self._wall(ready), exposure, roi, source)
                    for index, ready, exposure, roi, source in self._trigger_log
                    if ready <= now
                )
        self._halt()

    def _halt(self) -> None:
        self._recording = False
        self._triggered.clear()
        self._wake_all()

    async def _prepare(self) -> None:
        """Get ready to produce frames of the current configuration (subclasses)."""

    def _remember_auto(self, completed: int) -> None:
        """Put the AUTO frames complete so far into the camera memory (keeps the newest)."""
        if not self._memory.maxlen:
            return
        period = self._period()
        first = max(self._logged_index, self._anchor_index, completed - self._memory.maxlen)
        for index in range(first, completed):
            done = self._anchor_time + (index + 1 - self._anchor_index) * period
            self._memory.append(
                (index, self._wall(done), self._exposure, self._roi, self._trigger_source)
            )
        self._logged_index = max(self._logged_index, completed)

    # -- triggers ----------------------------------------------------------------------------
    async def _trigger_real(self) -> None:
        self._expose_triggered()

    async def external_trigger(self) -> bool:
        """Simulate the external trigger signal (TTL): expose one frame.

        Accepted (True) only while recording with trigger_source EXTERNAL; otherwise ignored
        (False), as hardware ignores a signal it does not expect.
        """
        return self._external(None)

    async def _external_pulse_real(self, sent: float) -> bool:
        return self._external(sent)  # a pulse on the trigger line (trigger_input)

    def _external(self, sent: float | None) -> bool:
        if not (self._recording and self._trigger_source == "EXTERNAL"):
            return False
        self._expose_triggered(sent)
        return True

    def _expose_triggered(self, sent: float | None = None) -> None:
        """Expose the next triggered frame from now, or from ``sent`` (the pulse's sending
        time, seconds since the epoch) if that lies at most MAX_PULSE_DELAY back."""
        start = now = asyncio.get_running_loop().time()
        if sent is not None:
            edge = sent - self._clock_offset  # in loop time
            if 0 <= now - edge <= MAX_PULSE_DELAY:
                start = edge
        ready = max(start, self._last_ready) + self._exposure
        self._last_ready = ready
        index = self._trigger_index
        self._trigger_index += 1
        if len(self._triggered) >= _MAX_PENDING_TRIGGERS:
            self._triggered.popleft()
        self._triggered.append((index, ready))
        if self._trigger_log.maxlen:
            self._trigger_log.append(
                (index, ready, self._exposure, self._roi, self._trigger_source)
            )
        self._wake_all()

    # -- grabbing ----------------------------------------------------------------------------
    def _grab_lock(self) -> asyncio.Lock:
        if self._grab_mutex is None:
            self._grab_mutex = asyncio.Lock()
        return self._grab_mutex

    def _fail_if_faulty(self) -> None:
        if self.take_fault("grab"):
            self._halt()
            raise StateError("error", "injected fault 'grab': the camera delivered no frame")

    async def _grab_real(self) -> np.ndarray:
        async with self._grab_lock():
            self._fail_if_faulty()
            self._check_available()
            if self._trigger_source == "AUTO":
                index, stamp = await self._next_auto()
            else:
                index, stamp = await self._next_triggered()
            exposure, roi = self._exposure, self._roi
            frame = await self._frame(index, exposure, roi)
        return ImageWithMetadata(
            frame, self._metadata(index, stamp, exposure, roi, self._trigger_source)
        )

    def _metadata(
        self, index: int, stamp: float, exposure: float, roi: tuple, source: str
    ) -> dict[str, Any]:
        return {
            "index": index,
            "exposure_time": exposure,
            "timestamp": stamp,
            "roi": list(roi),
            "trigger_source": source,
        }

    def _not_recording(self) -> CameraError:
        return CameraError("the camera stopped recording while waiting for a frame")

    async def _next_auto(self) -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        while True:
            if not self._recording:
                raise self._not_recording()
            now = loop.time()
            completed = self._completed(now)
            keep = self._ring_size if self._buffered else 1
            first = max(self._next_index, completed - keep)
            if first < completed:
                self._next_index = first + 1
                done = self._anchor_time + (first + 1 - self._anchor_index) * self._period()
                return first, self._wall(done)
            await self._wait(
                self._anchor_time + (self._next_index + 1 - self._anchor_index) * self._period()
            )

    async def _next_triggered(self) -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grab_timeout
        while True:
            if not self._recording:
                raise self._not_recording()
            now = loop.time()
            if self._triggered:
                index, ready = self._triggered[0]
                if ready <= now:
                    self._triggered.popleft()
                    return index, self._wall(ready)
                await self._wait(ready)
                continue
            if now >= deadline:
                how = ("call trigger()" if self._trigger_source == "SOFTWARE"
                       else "send an external trigger (external_trigger())")
                raise CameraError(
                    f"no frame within grab_timeout {self._grab_timeout:g} s: with trigger_source "
                    f"{self._trigger_source!r} {how} before grab()"
                )
            await self._wait(deadline)

    def _check_available(self) -> None:
        """Raise :class:`FramesExhaustedError` when the source has no further frame."""

    async def _frame(self, index: int, exposure: float, roi: tuple) -> np.ndarray:
        raise NotImplementedError

    # -- faults and stopping -----------------------------------------------------------------
    async def clear_fault(self) -> None:
        """Drop pending faults; a camera in 'error' returns to 'standby'."""
        await super().clear_fault()
        if await self.get_state() == "error":
            self._halt()
            self["state"].set_software("standby")

    async def _emergency_stop(self) -> None:
        await self.cancel_operation(timeout=None)
        state = await self.get_state()
        if state == "recording":
            await self._stop_recording()
        elif state == "readout":
            await self._stop_readout()
        self._halt()


# -- synthetic frames -----------------------------------------------------------------------------
class _Plan:
    """Makes the frames of one configuration (exposure, ROI): ``base + shifted noise view``."""

    def __init__(self, base_image: np.ndarray, noise: np.ndarray | None, span: int) -> None:
        self.base = base_image
        self.noise = noise
        self.span = span
        self.size = base_image.size
        self.nbytes = base_image.nbytes

    def render(self, index: int, seed: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``index``, written into ``out`` if given (one pass over the frame)."""
        if out is None:
            out = np.empty_like(self.base)
        if self.noise is None:
            np.copyto(out, self.base)
            return out
        offset = ((index + 1) * 2654435761 + seed) % self.span
        noise, period = self.noise, len(self.noise)
        if offset + self.size <= period:
            view = noise[offset:offset + self.size].reshape(self.base.shape)
            return np.add(self.base, view, out=out)
        # The bank repeats with its length: add it piece by piece, each piece read from the
        # one small bank (it stays in the CPU cache) instead of a frame-long tiled copy.
        base, flat = self.base.reshape(-1), out.reshape(-1)
        done, start = 0, offset % period
        while done < self.size:
            count = min(period - start, self.size - done)
            np.add(base[done:done + count], noise[start:start + count],
                   out=flat[done:done + count])
            done, start = done + count, 0
        return out


def _default_background(width: int, height: int, dtype: np.dtype) -> np.ndarray:
    """A flat field: a broad beam profile with some structure (float32)."""
    if np.issubdtype(dtype, np.integer):
        peak = 100.0 if np.iinfo(dtype).max < 1000 else 4000.0
    else:
        peak = 1000.0
    xx = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    yy = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    beam = np.exp(-(xx**2) / 1.6) * np.exp(-(yy**2) / 1.0)
    structure = 1 + 0.15 * np.sin(12 * xx) * np.cos(9 * yy)
    return (peak * beam * structure).astype(np.float32)


class Camera(_SimulatedCamera):
    """A simulated camera producing synthetic frames (see the module doc for its timing).

    ``background`` is the expected image at ``reference_exposure`` (its shape is the sensor
    size; ``width``/``height`` are then ignored); without it a flat-field-like image is made.
    With ``simulate`` the intensity scales with ``exposure_time / reference_exposure`` and
    Poisson-like noise is added; without, ``background`` is returned unchanged (cropped to the
    ROI). ``dtype`` is that of the frames. ``grab_timeout`` bounds how long a grab waits for a
    SOFTWARE/EXTERNAL trigger; ``ring_size`` is the ring buffer of ``buffered`` grabbing;
    ``seed`` makes the noise reproducible.
    """

    async def __ainit__(
        self,
        background: np.ndarray | None = None,
        simulate: bool = True,
        width: int = 640,
        height: int = 480,
        dtype: str = "uint16",
        exposure_time: pint.Quantity | None = None,
        frame_rate: pint.Quantity | None = None,
        reference_exposure: pint.Quantity | None = None,
        sensor_pixel_width: pint.Quantity | None = None,
        sensor_pixel_height: pint.Quantity | None = None,
        buffered: bool = False,
        grab_timeout: pint.Quantity | None = None,
        ring_size: int = 16,
        seed: int | None = None,
    ) -> None:
        self._dtype = np.dtype(dtype)
        if self._dtype.kind not in "uif":
            raise ValueError(f"dtype must be an integer or float type, got {dtype!r}")
        if background is not None:
            background = np.asarray(background)
            if background.ndim != 2 or background.size == 0:
                raise ValueError(f"background must be a 2-D image, got shape {background.shape}")
            height, width = background.shape
        await super().__ainit__(
            width, height, exposure_time, frame_rate, sensor_pixel_width, sensor_pixel_height,
            buffered, grab_timeout, ring_size,
        )
        self._simulate = bool(simulate)
        self._reference = _quantity(
            reference_exposure, q.Quantity(self._exposure, q.s), q.s, "reference_exposure"
        )
        if self._reference <= 0:
            raise ValueError("reference_exposure must be positive")
        self._rng = np.random.default_rng(seed)
        if background is None:
            if width * height * 4 >= _THREAD_BYTES:
                background = await run_in_executor(
                    _default_background, width, height, self._dtype
                )
            else:
                background = _default_background(width, height, self._dtype)
        self._background = background.astype(np.float32, copy=False)
        self._background_mean = float(self._background.mean())
        self._raw = _to_dtype(background, self._dtype) if not simulate else None
        self._plans: dict[tuple, _Plan] = {}
        self._banks: dict[float, tuple[np.ndarray, int]] = {}
        self._cache_lock = threading.Lock()

    async def _prepare(self) -> None:
        await self._plan(self._exposure, self._roi)

    async def _plan(self, exposure: float, roi: tuple) -> _Plan:
        plan = self._plans.get((exposure, roi))
        if plan is None:
            if roi[2] * roi[3] * self._dtype.itemsize >= _THREAD_BYTES // 4:
                plan = await run_in_executor(self._make_plan, exposure, roi)
            else:
                plan = self._make_plan(exposure, roi)
        return plan

    def _make_plan(self, exposure: float, roi: tuple) -> _Plan:
        x0, y0, width, height = roi
        width_s, height_s = self._sensor
        span = max(width_s * height_s // 4, 4096)
        if self._raw is not None:
            plan = _Plan(np.ascontiguousarray(self._raw[y0:y0 + height, x0:x0 + width]), None, 1)
        else:
            factor = exposure / self._reference
            level = round(self._background_mean * factor, 3)
            noise, shift = self._noise_bank(level, width_s * height_s + span)
            expected = self._background[y0:y0 + height, x0:x0 + width] * np.float32(factor)
            if self._dtype.kind == "f":
                base_image = expected.astype(self._dtype)
            else:
                top = int(noise.max()) if noise.size else 0
                ceiling = max(int(np.iinfo(self._dtype).max) - top, 0)
                shifted = np.rint(expected)
                shifted += shift
                np.clip(shifted, 0, ceiling, out=shifted)
                base_image = shifted.astype(self._dtype)
            plan = _Plan(np.ascontiguousarray(base_image), noise, span)
        with self._cache_lock:
            if len(self._plans) >= 8:
                self._plans.pop(next(iter(self._plans)))
            self._plans[(exposure, roi)] = plan
        return plan

    def _noise_bank(self, level: float, length: int) -> tuple[np.ndarray, int]:
        """Noise of mean level ``level`` as ``(bank, shift)``: integer banks are stored shifted
        by ``-shift`` so that they are non-negative and add in the frame's dtype."""
        with self._cache_lock:
            found = self._banks.get(level)
        if found is not None:
            return found
        unique = min(length, _UNIQUE_NOISE)
        if level <= 0:
            samples = np.zeros(unique, dtype=np.float32)
        elif level < _GAUSSIAN_ABOVE:
            samples = self._rng.poisson(level, unique).astype(np.float32) - np.float32(level)
        else:
            samples = self._rng.standard_normal(unique, dtype=np.float32)
            samples *= np.float32(math.sqrt(level))
        if self._dtype.kind == "f":
            shift = 0
            values = samples.astype(self._dtype)
        else:
            rounded = np.rint(samples).astype(np.int64)
            shift = int(rounded.min())
            rounded -= shift
            np.clip(rounded, 0, np.iinfo(self._dtype).max, out=rounded)
            values = rounded.astype(self._dtype)
        bank = values  # used cyclically by _Plan.render (period: its length)
        with self._cache_lock:
            if len(self._banks) >= 4:
                self._banks.pop(next(iter(self._banks)))
            self._banks[level] = (bank, shift)
        return bank, shift

    async def _frame(self, index: int, exposure: float, roi: tuple) -> np.ndarray:
        plan = await self._plan(exposure, roi)
        out = await self._allocate(plan.base.shape, plan.base.dtype)
        if plan.nbytes >= _THREAD_BYTES:
            return await run_in_executor(plan.render, index, self._seed, out)
        return plan.render(index, self._seed, out)


def _to_dtype(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "ui" and image.dtype != dtype:
        info = np.iinfo(dtype)
        image = np.clip(np.rint(image), info.min, info.max)
    return image.astype(dtype)


class BufferedCamera(base.BufferedMixin, Camera):
    """A simulated camera with a memory of ``buffer_size`` frames (the newest are kept).

    Every frame recorded between start_recording and stop_recording is stored, grabbed or not
    (in AUTO mode at ``frame_rate``; triggered frames once exposed); start_readout then reads
    them out in order with grab.
    """

    async def __ainit__(
        self,
        background: np.ndarray | None = None,
        simulate: bool = True,
        width: int = 640,
        height: int = 480,
        dtype: str = "uint16",
        exposure_time: pint.Quantity | None = None,
        frame_rate: pint.Quantity | None = None,
        reference_exposure: pint.Quantity | None = None,
        sensor_pixel_width: pint.Quantity | None = None,
        sensor_pixel_height: pint.Quantity | None = None,
        buffered: bool = False,
        grab_timeout: pint.Quantity | None = None,
        ring_size: int = 16,
        seed: int | None = None,
        buffer_size: int = 100,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        await super().__ainit__(
            background, simulate, width, height, dtype, exposure_time, frame_rate,
            reference_exposure, sensor_pixel_width, sensor_pixel_height, buffered,
            grab_timeout, ring_size, seed,
        )
        self._memory = deque(maxlen=buffer_size)
        self._trigger_log = deque(maxlen=buffer_size)

    # -- camera memory -------------------------------------------------------------------------
    async def _get_frames_in_buffer(self) -> int:
        return len(self._memory)

    async def _start_readout_real(self) -> None:
        self._memory_cursor = 0

    async def _stop_readout_real(self) -> None:
        self._wake_all()

    async def _readout_real(self) -> np.ndarray:
        async with self._grab_lock():
            self._fail_if_faulty()
            if self._memory_cursor >= len(self._memory):
                raise FramesExhaustedError(
                    f"all {len(self._memory)} frames in the camera memory have been read out"
                )
            index, stamp, exposure, roi, source = self._memory[self._memory_cursor]
            self._memory_cursor += 1
            frame = await self._frame(index, exposure, roi)
        return ImageWithMetadata(frame, self._metadata(index, stamp, exposure, roi, source))


# -- TIFF sequences -------------------------------------------------------------------------------
def _scan_tiffs(pattern_or_directory: str) -> tuple[list[tuple[str, int]], tuple[int, ...], str]:
    """``([(path, page), ...], frame shape, dtype)`` of a TIFF directory or glob pattern."""
    if os.path.isdir(pattern_or_directory):
        paths = [
            os.path.join(pattern_or_directory, name)
            for name in os.listdir(pattern_or_directory)
            if name.lower().endswith((".tif", ".tiff"))
        ]
    else:
        paths = glob.glob(pattern_or_directory)
    paths.sort()
    frames: list[tuple[str, int]] = []
    shape: tuple[int, ...] = ()
    dtype = ""
    for path in paths:
        with tifffile.TiffFile(path) as tif:
            for number, page in enumerate(tif.pages):
                if not shape:
                    shape, dtype = tuple(page.shape), str(page.dtype)
                    if len(shape) != 2:
                        raise ValueError(f"{path}: frames must be 2-D images, got shape {shape}")
                frames.append((path, number))
    return frames, shape, dtype


def _read_tiff(
    path: str, page: int, shape: tuple[int, ...], roi: tuple, out: np.ndarray | None = None
) -> np.ndarray:
    """Page ``page`` of ``path`` cropped to ``roi``, in ``out`` if given."""
    x0, y0, width, height = roi
    whole = (x0, y0, width, height) == (0, 0, shape[1], shape[0])
    with tifffile.TiffFile(path) as tif:
        stored = tif.pages[page]
        if tuple(stored.shape) != shape:
            raise CameraError(f"{path} page {page}: shape {stored.shape} differs from {shape}")
        if whole and out is not None and out.dtype == stored.dtype:
            return stored.asarray(out=out)
        image = stored.asarray()
    if whole and out is None:
        return image
    if out is None:
        return np.array(image[y0:y0 + height, x0:x0 + width])
    np.copyto(out, image[y0:y0 + height, x0:x0 + width], casting="unsafe")
    return out


class FileCamera(_SimulatedCamera):
    """A camera serving the frames of a TIFF sequence (every page of every file, in file name
    order) with the timing of the simulated cameras.

    ``pattern_or_directory`` is a directory (its ``*.tif``/``*.tiff`` files) or a glob pattern.
    Each grab returns the next frame of the sequence, cropped to the ROI; after the last one it
    starts over (``loop``) or raises :class:`FramesExhaustedError` (which ends :meth:`stream`)
    until :meth:`reset`. Files are read in a worker thread.
    """

    async def __ainit__(
        self,
        pattern_or_directory: str,
        loop: bool = True,
        exposure_time: pint.Quantity | None = None,
        frame_rate: pint.Quantity | None = None,
        sensor_pixel_width: pint.Quantity | None = None,
        sensor_pixel_height: pint.Quantity | None = None,
        buffered: bool = False,
        grab_timeout: pint.Quantity | None = None,
        ring_size: int = 16,
    ) -> None:
        frames, shape, dtype = await run_in_executor(_scan_tiffs, pattern_or_directory)
        if not frames:
            raise ValueError(f"no TIFF files found at {pattern_or_directory!r}")
        await super().__ainit__(
            shape[1], shape[0], exposure_time, frame_rate, sensor_pixel_width,
            sensor_pixel_height, buffered, grab_timeout, ring_size,
        )
        self._files = frames
        self._shape = shape
        self._dtype_name = dtype
        self._loop = bool(loop)
        self._cursor = 0

    @property
    def sequence_length(self) -> int:
        """Number of frames in the sequence."""
        return len(self._files)

    async def reset(self) -> None:
        """Serve the sequence from its first frame again."""
        self._cursor = 0

    def _check_available(self) -> None:
        if self._cursor >= len(self._files):
            if not self._loop:
                raise FramesExhaustedError(
                    f"all {len(self._files)} frames of the sequence were served; reset() "
                    "starts it again"
                )
            self._cursor = 0

    async def _frame(self, index: int, exposure: float, roi: tuple) -> np.ndarray:
        path, page = self._files[self._cursor]
        out = await self._allocate((roi[3], roi[2]), np.dtype(self._dtype_name))
        frame = await run_in_executor(_read_tiff, path, page, self._shape, roi, out)
        self._cursor += 1
        return frame

    def _metadata(
        self, index: int, stamp: float, exposure: float, roi: tuple, source: str
    ) -> dict[str, Any]:
        metadata = super()._metadata(index, stamp, exposure, roi, source)
        path, page = self._files[self._cursor - 1]
        metadata["file"] = path
        metadata["page"] = page
        return metadata


__all__ = ["FAULTS", "FAULT_KINDS", "BufferedCamera", "Camera", "FileCamera"]
