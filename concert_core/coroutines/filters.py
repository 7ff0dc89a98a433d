"""Filters: async generators that take a producer of items (mostly images) and yield
processed items. Per-image numpy work runs in a worker thread, so the event loop keeps
serving devices while frames are processed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import numpy as np
import pint

from concert_core.quantities import q

SliceSpec = tuple[int | None, ...] | slice | None


async def absorptivity(producer: AsyncIterable[np.ndarray]) -> AsyncIterator[np.ndarray]:
    """Yield ``-ln(I / I0)`` of flat-corrected images ``I / I0`` (Beer-Lambert: the
    absorptivity ``mu * t`` of ``I = I0 * exp(-mu * t)``).

    Non-positive values give ``inf`` (zero transmission) or ``nan``, without warnings.
    """

    def compute(image: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.log(image)

    async for image in producer:
        yield await asyncio.to_thread(compute, image)


async def average_images(producer: AsyncIterable[np.ndarray]) -> AsyncIterator[np.ndarray]:
    """Yield the running mean (float64) of the images received so far, one per image."""
    total: np.ndarray | None = None
    count = 0

    def add(image: np.ndarray) -> np.ndarray:
        nonlocal total
        if total is None:
            total = np.array(image, dtype=np.float64)
        else:
            total += image
        return total / count

    async for image in producer:
        count += 1
        yield await asyncio.to_thread(add, image)


def _as_slice(spec: SliceSpec) -> slice:
    if spec is None:
        return slice(None)
    if isinstance(spec, slice):
        return spec
    return slice(*spec)


async def downsize(
    producer: AsyncIterable[np.ndarray],
    x_slice: SliceSpec = None,
    y_slice: SliceSpec = None,
    z_slice: SliceSpec = None,
) -> AsyncIterator[np.ndarray]:
    """Crop and subsample images in 3D.

    Each argument is ``(start, stop[, step])`` (or a :class:`slice`, or ``None`` for
    everything): ``x_slice`` acts on the image width, ``y_slice`` on its height and
    ``z_slice`` on the sequence of images. ``start`` is included, ``stop`` excluded.
    Yielded images are views of the incoming ones.
    """
    xs, ys, zs = _as_slice(x_slice), _as_slice(y_slice), _as_slice(z_slice)
    z_start, z_stop = zs.start or 0, zs.stop
    z_step = 1 if zs.step is None else zs.step
    if z_start < 0 or (z_stop is not None and z_stop < 0) or z_step < 1:
        raise ValueError("z_slice needs non-negative start/stop and a positive step")
    index = 0
    async for image in producer:
        if z_stop is not None and index >= z_stop:
            break
        if index >= z_start and (index - z_start) % z_step == 0:
            yield image[ys, xs]
        index += 1


async def flat_correct(
    flat: np.ndarray, producer: AsyncIterable[np.ndarray], dark: np.ndarray | None = None
) -> AsyncIterator[np.ndarray]:
    """Yield flat-corrected images ``(image - dark) / (flat - dark)``.

    The result is float32 for integer or float32 input (float64 input stays float64).
    Pixels where ``flat == dark`` carry no information: they are ``nan`` in the result,
    and no warning is emitted for them.
    """
    flat = np.asarray(flat)
    dtype = np.result_type(flat, np.float32)
    offset = np.zeros((), dtype=dtype) if dark is None else np.asarray(dark, dtype=dtype)
    denominator = flat.astype(dtype) - offset
    valid = denominator != 0

    def correct(image: np.ndarray) -> np.ndarray:
        result_type = np.result_type(image, dtype)
        numerator = np.subtract(image, offset, dtype=result_type)
        out = np.full_like(numerator, np.nan)  # keeps ImageWithMetadata and its metadata
        np.divide(numerator, denominator, out=out, where=valid)
        return out

    async for image in producer:
        yield await asyncio.to_thread(correct, image)


async def stall(
    producer: AsyncIterable[Any], per_shot: int = 10, flush_at: int | None = None
) -> AsyncIterator[Any]:
    """Pass on every ``per_shot``-th item only.

    With ``flush_at`` the items come in groups of ``flush_at`` (for example one
    tomogram of projections): the last item of each group is passed on as well, and
    counting restarts with the next group.
    """
    if per_shot < 1 or (flush_at is not None and flush_at < 1):
        raise ValueError("per_shot and flush_at must be positive")
    count = 0
    async for item in producer:
        count += 1
        if flush_at is not None and count == flush_at:
            count = 0
            yield item
        elif count % per_shot == 0:
            yield item


class Timer:
    """Measures how long the stages after it take, item by item.

    ``timer(producer)`` passes items on and times, for each one, how long it takes until
    the following stages ask for the next item (i.e. finished with this one).
    """

    def __init__(self) -> None:
        self.durations: list[float] = []

    async def __call__(self, producer: AsyncIterable[Any]) -> AsyncIterator[Any]:
        async for item in producer:
            began = time.perf_counter()
            yield item
            self.durations.append(time.perf_counter() - began)

    @property
    def duration(self) -> pint.Quantity:
        """All measured times summed up."""
        return sum(self.durations) * q.s

    @property
    def mean(self) -> pint.Quantity:
        """Mean time per item (``nan`` before the first item)."""
        if not self.durations:
            return float("nan") * q.s
        return float(np.mean(self.durations)) * q.s

    def reset(self) -> None:
        """Forget all measured times."""
        self.durations = []


__all__ = ["Timer", "absorptivity", "average_images", "downsize", "flat_correct", "stall"]
