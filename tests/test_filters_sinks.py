"""Behaviour of concert_core.coroutines.filters and .sinks."""

from __future__ import annotations

import asyncio
import warnings

import numpy as np
import pytest

from concert_core.coroutines.base import broadcast
from concert_core.coroutines.filters import (
    Timer,
    absorptivity,
    average_images,
    downsize,
    flat_correct,
    stall,
)
from concert_core.coroutines.sinks import Accumulate, Result, null
from concert_core.helpers import ImageWithMetadata
from concert_core.quantities import q


async def stream(items):
    for item in items:
        yield item


async def collect(items):
    return [item async for item in items]


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


async def test_absorptivity_is_minus_log(no_warnings):
    images = [np.array([[1.0, np.exp(-2.0)], [0.0, 0.5]])]
    (result,) = await collect(absorptivity(stream(images)))
    np.testing.assert_allclose(result[0], [0.0, 2.0])
    assert result[1, 0] == np.inf
    assert result[1, 1] == pytest.approx(np.log(2))


async def test_average_images_yields_running_mean():
    images = [np.full((2, 3), value, dtype=np.uint16) for value in (1, 2, 6)]
    means = await collect(average_images(stream(images)))
    assert [m[0, 0] for m in means] == [1.0, 1.5, 3.0]
    assert all(m.dtype == np.float64 and m.shape == (2, 3) for m in means)
    assert images[0][0, 0] == 1  # inputs untouched


async def test_downsize_in_three_dimensions():
    images = [np.arange(20).reshape(4, 5) + 100 * i for i in range(10)]
    result = await collect(
        downsize(stream(images), x_slice=(1, 5, 2), y_slice=(0, 2), z_slice=(2, 8, 3))
    )
    assert len(result) == 2  # images 2 and 5
    np.testing.assert_array_equal(result[0], images[2][0:2, 1:5:2])
    np.testing.assert_array_equal(result[1], images[5][0:2, 1:5:2])
    untouched = await collect(downsize(stream(images)))
    assert len(untouched) == len(images)
    assert all(np.array_equal(a, b) for a, b in zip(untouched, images, strict=True))
    with pytest.raises(ValueError):
        await collect(downsize(stream(images), z_slice=(0, 5, 0)))


async def test_downsize_stops_reading_after_z_stop():
    read = []

    async def counted():
        for i in range(100):
            read.append(i)
            yield np.zeros((2, 2)) + i

    assert len(await collect(downsize(counted(), z_slice=(0, 3)))) == 3
    assert len(read) <= 4


async def test_flat_correct_with_and_without_dark(no_warnings):
    flat = np.array([[10, 20], [30, 40]], dtype=np.uint16)
    dark = np.array([[2, 4], [6, 8]], dtype=np.uint16)
    image = np.array([[6, 12], [18, 24]], dtype=np.uint16)
    (with_dark,) = await collect(flat_correct(flat, stream([image]), dark=dark))
    np.testing.assert_allclose(with_dark, [[0.5, 0.5], [0.5, 0.5]])
    assert with_dark.dtype == np.float32
    (without,) = await collect(flat_correct(flat, stream([image])))
    np.testing.assert_allclose(without, image / flat)


async def test_flat_correct_undefined_pixels_are_nan_without_warnings(no_warnings):
    flat = np.array([[5.0, 3.0]])
    dark = np.array([[5.0, 1.0]])
    (result,) = await collect(flat_correct(flat, stream([np.array([[7.0, 2.0]])]), dark=dark))
    assert np.isnan(result[0, 0])
    assert result[0, 1] == 0.5
    assert result.dtype == np.float64


async def test_flat_correct_keeps_metadata():
    image = ImageWithMetadata(np.ones((2, 2)), metadata={"index": 3})
    (result,) = await collect(flat_correct(np.full((2, 2), 2.0), stream([image])))
    assert isinstance(result, ImageWithMetadata)
    assert result.metadata == {"index": 3}
    np.testing.assert_allclose(result, 0.5)


async def test_stall_passes_every_nth_and_flushes():
    assert await collect(stall(stream(range(1, 11)), per_shot=3)) == [3, 6, 9]
    # groups of 5: every 2nd item plus the last of each group
    assert await collect(stall(stream(range(1, 11)), per_shot=2, flush_at=5)) == [2, 4, 5, 7, 9, 10]
    with pytest.raises(ValueError):
        await collect(stall(stream([1]), per_shot=0))


async def test_timer_measures_the_following_stages():
    timer = Timer()
    assert np.isnan(timer.mean.magnitude)

    async def slow_consumer(items):
        async for _ in items:
            await asyncio.sleep(0.01)

    await slow_consumer(timer(stream(range(4))))
    assert len(timer.durations) == 4
    # lower bound only: asyncio.sleep never returns early by more than clock resolution
    assert timer.duration >= 4 * 0.008 * q.s
    assert timer.mean.magnitude == pytest.approx(timer.duration.magnitude / 4)
    timer.reset()
    assert timer.durations == []
    assert timer.duration == 0 * q.s


async def test_accumulate_list_and_reset_behaviour():
    acc = Accumulate()
    await acc(stream([1, 2]))
    await acc(stream([3]))
    assert acc.items == [3]  # reset on every call
    keep = Accumulate(reset_on_call=False)
    await keep(stream([1, 2]))
    await keep(stream([3]))
    assert keep.items == [1, 2, 3]


async def test_accumulate_into_preallocated_array():
    acc = Accumulate(shape=(3, 2, 2), dtype=np.uint16)
    await acc(stream([np.full((2, 2), i) for i in range(3)]))
    assert acc.items.dtype == np.uint16
    assert acc.items.shape == (3, 2, 2)
    np.testing.assert_array_equal(acc.items[:, 0, 0], [0, 1, 2])
    assert acc.count == 3
    with pytest.raises(ValueError, match="more than 3"):
        await acc(stream([np.zeros((2, 2))] * 4))


async def test_accumulate_array_continues_without_reset():
    acc = Accumulate(shape=(4,), dtype=float, reset_on_call=False)
    await acc(stream([1.0, 2.0]))
    await acc(stream([3.0]))
    np.testing.assert_array_equal(acc.items, [1.0, 2.0, 3.0, 0.0])


async def test_result_and_null():
    result = Result()
    assert result.result is None
    await result(stream([1, 2, 3]))
    assert result.result == 3
    consumed = []

    async def counted():
        for i in range(5):
            consumed.append(i)
            yield i

    assert await null(counted()) is None
    assert consumed == list(range(5))


async def test_pipeline_through_broadcast():
    flat = np.full((4, 4), 2.0)
    images = [np.full((4, 4), float(i)) for i in range(6)]
    acc, last = Accumulate(), Result()

    async def corrected(items):
        await acc(downsize(flat_correct(flat, items), x_slice=(0, 2)))

    await asyncio.gather(*broadcast(stream(images), corrected, last))
    assert [a[0, 0] for a in acc.items] == [i / 2 for i in range(6)]
    assert acc.items[0].shape == (4, 2)
    assert last.result is images[-1]
