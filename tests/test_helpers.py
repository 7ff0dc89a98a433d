"""Behaviour of concert_core.helpers."""

from __future__ import annotations

import gc
import logging
import pickle
import queue
import weakref

import numpy as np
import pint
import pytest
import zmq

from concert_core import config
from concert_core.helpers import (
    Bunch,
    CommData,
    ImageWithMetadata,
    Numeric,
    PerformanceTracker,
    PrioItem,
    SocketType,
    arange,
    expects,
    is_iterable,
    linspace,
    measure,
    memoize,
)
from concert_core.quantities import q


def test_bunch_from_mapping_and_list():
    b = Bunch({"foo": 123, "bar": "baz"})
    assert (b.foo, b.bar) == (123, "baz")
    assert "foo" in b
    assert sorted(b) == ["bar", "foo"]
    names = Bunch(["start", "stop"])
    assert names.stop == "stop"
    assert Bunch({"a": 1}) == Bunch({"a": 1}) != Bunch({"a": 2})
    assert repr(Bunch({"a": 1})) == "Bunch(a=1)"


def test_prio_item_orders_by_priority_only():
    items = queue.PriorityQueue()
    for priority in (2, 0, 1):
        items.put(PrioItem(priority, np.zeros(3)))  # arrays cannot be compared
    items.put(PrioItem(1, None))
    assert [items.get().priority for _ in range(4)] == [0, 1, 1, 2]
    assert PrioItem(1, "a") == PrioItem(1, "b")


class TestImageWithMetadata:
    def test_callers_dict_is_never_mutated(self):
        metadata = {"exposure": 1, "motor": {"x": 0}}
        image = ImageWithMetadata(np.zeros((4, 4)), metadata=metadata)
        image.metadata["exposure"] = 2
        image.metadata["motor"]["x"] = 5
        assert metadata == {"exposure": 1, "motor": {"x": 0}}

    def test_views_and_results_get_their_own_copy(self):
        image = ImageWithMetadata(np.arange(16.0).reshape(4, 4), metadata={"tags": ["a"]})
        view = image[1:3]
        derived = image * 2
        for other in (view, derived):
            assert isinstance(other, ImageWithMetadata)
            assert other.metadata == {"tags": ["a"]}
            assert other.metadata is not image.metadata
        view.metadata["tags"].append("b")
        derived.metadata["new"] = True
        assert image.metadata == {"tags": ["a"]}

    def test_reductions_are_plain_scalars(self):
        image = ImageWithMetadata(np.ones((2, 2)), metadata={"a": 1})
        assert type(image.mean()) is np.float64
        assert type(image.max()) is np.float64
        assert isinstance(image.sum(axis=0), ImageWithMetadata)

    def test_pickle_keeps_metadata(self):
        image = ImageWithMetadata(np.arange(6, dtype=np.uint16).reshape(2, 3), metadata={"i": 7})
        clone = pickle.loads(pickle.dumps(image))
        assert isinstance(clone, ImageWithMetadata)
        assert clone.metadata == {"i": 7}
        np.testing.assert_array_equal(clone, image)
        assert clone.dtype == np.uint16

    def test_metadata_taken_from_another_image(self):
        source = ImageWithMetadata(np.zeros(2), metadata={"a": 1})
        copy = ImageWithMetadata(source)
        copy.metadata["a"] = 2
        assert source.metadata == {"a": 1}
        assert ImageWithMetadata(np.zeros(2)).metadata == {}


def test_socket_types_match_libzmq():
    assert SocketType.PUSH == zmq.PUSH
    assert SocketType.PULL == zmq.PULL
    assert SocketType.PUB == zmq.PUB
    assert SocketType.SUB == zmq.SUB


def test_comm_data_endpoints():
    local = CommData(None, 5555)
    assert local.server_endpoint == "tcp://127.0.0.1:5555"
    assert local.client_endpoint == "tcp://127.0.0.1:5555"
    assert CommData("localhost", 5555).server_endpoint == "tcp://127.0.0.1:5555"
    remote = CommData("10.0.0.5", 8991, socket_type=SocketType.PUB)
    assert remote.server_endpoint == "tcp://10.0.0.5:8991"
    assert remote.client_endpoint == "tcp://10.0.0.5:8991"
    everywhere = CommData("*", 8991)
    assert everywhere.server_endpoint == "tcp://*:8991"
    with pytest.raises(ValueError):
        _ = everywhere.client_endpoint
    random_port = CommData(None)
    assert random_port.server_endpoint == "tcp://127.0.0.1:*"
    with pytest.raises(ValueError):
        _ = random_port.client_endpoint
    ipc = CommData("/tmp/concert-cam", protocol="ipc")
    assert ipc.server_endpoint == ipc.client_endpoint == "ipc:///tmp/concert-cam"
    assert local.sndhwm == 1000 and local.socket_type is SocketType.PUSH


def test_comm_data_binds_really_to_loopback():
    context = zmq.Context.instance()
    server = context.socket(CommData(None).socket_type)
    try:
        server.bind(CommData(None).server_endpoint)
        assert server.getsockopt_string(zmq.LAST_ENDPOINT).startswith("tcp://127.0.0.1:")
    finally:
        server.close(linger=0)


def test_performance_tracker_counts(caplog):
    tracker = PerformanceTracker()
    with pytest.raises(RuntimeError):
        tracker.lap()
    with caplog.at_level(logging.DEBUG, logger="concert_core.helpers"), tracker:
        for _ in range(3):
            assert tracker.lap(1_000_000) >= 0
    assert tracker.num_laps == 3
    assert tracker.total_bytes == 3_000_000
    assert tracker.duration.units == q.s
    assert tracker.duration.magnitude > 0
    assert tracker.throughput.to(q.MB / q.s).magnitude == pytest.approx(
        3 / tracker.duration.magnitude
    )
    assert tracker.lap_rate.units == q.Hz
    assert sum("lap" in record.message for record in caplog.records) == 3


def test_performance_tracker_summary_logs_once(caplog):
    tracker = PerformanceTracker(summary=True, loglevel=logging.INFO)
    with caplog.at_level(logging.INFO, logger="concert_core.helpers"):
        tracker.start()
        tracker.lap(10)
        tracker.lap(10)
        tracker.stop()
    (record,) = caplog.records
    assert "2 laps, 20 B" in record.message
    assert record.levelno == logging.INFO
    frozen = tracker.duration
    assert tracker.duration == frozen  # stopped: no longer grows


def test_arange_and_linspace_keep_units():
    values = arange(0 * q.mm, 1 * q.cm, 2.5 * q.mm)
    assert values.units == q.mm
    np.testing.assert_allclose(values.magnitude, [0, 2.5, 5, 7.5])
    assert isinstance(arange(0, 3, 1), np.ndarray)
    points = linspace(0 * q.deg, 180 * q.deg, 5)
    assert points.units == q.deg
    np.testing.assert_allclose(points.magnitude, [0, 45, 90, 135, 180])
    np.testing.assert_allclose(
        linspace(0 * q.s, 1 * q.s, 4, endpoint=False).magnitude, [0, 0.25, 0.5, 0.75]
    )
    with pytest.raises(pint.DimensionalityError):
        arange(0 * q.mm, 1 * q.s, 1 * q.mm)


class Camera:
    pass


class TestExpects:
    def test_types_and_numeric(self):
        @expects(Camera, pixel_size=Numeric(2, q.mm), exposure=Numeric(1, q.s))
        def setup(camera, pixel_size=None, exposure=1 * q.s):
            return camera, pixel_size, exposure

        camera = Camera()
        assert setup(camera, [1, 2] * q.um)[0] is camera
        setup(camera)  # defaults are not checked
        setup(camera, None)  # None allowed where the default is None
        setup(camera, exposure=3 * q.ms)
        for bad in (
            lambda: setup("not a camera"),
            lambda: setup(camera, [1, 2] * q.s),
            lambda: setup(camera, [1, 2, 3] * q.mm),
            lambda: setup(camera, [1, 2]),
            lambda: setup(camera, exposure=[1, 2] * q.s),
            lambda: setup(camera, exposure=None),
        ):
            with pytest.raises(TypeError):
                bad()

    def test_unitless_numeric_and_none_placeholder(self):
        @expects(None, Numeric(1))
        def scale(anything, factor):
            return factor

        assert scale(object(), 2.5) == 2.5
        with pytest.raises(TypeError, match="without unit"):
            scale(1, 2 * q.mm)
        with pytest.raises(TypeError):
            scale(1, "2")

    async def test_async_functions(self):
        @expects(int)
        async def double(x):
            return 2 * x

        assert await double(2) == 4
        with pytest.raises(TypeError):
            await double(2.0)

    def test_bad_declarations(self):
        with pytest.raises(TypeError):
            expects(int, int)(lambda x: x)
        with pytest.raises(TypeError):
            expects(y=int)(lambda x: x)
        with pytest.raises(ValueError):
            Numeric(0)


def test_is_iterable():
    assert is_iterable([1])
    assert is_iterable("ab")
    assert is_iterable([1, 2] * q.mm)
    assert not is_iterable(1)
    assert not is_iterable(1 * q.mm)
    assert not is_iterable(np.array(1))


async def test_measure_sync_and_async(caplog):
    @measure
    def add(a, b):
        return a + b

    @measure(return_result=True)
    async def mul(a, b):
        return a * b

    with caplog.at_level(logging.INFO, logger="concert_core.helpers"):
        assert add(1, 2) == 3
        result, duration = await mul(2, 3)
    assert result == 6
    assert duration.units == q.s and duration.magnitude >= 0
    assert any("add took" in record.message for record in caplog.records)


class TestMemoize:
    def test_caches_per_arguments(self):
        calls = []

        @memoize
        def square(x):
            calls.append(x)
            return x * x

        assert [square(3), square(3), square(4)] == [9, 9, 16]
        assert calls == [3, 4]
        square.cache_clear()
        square(3)
        assert calls == [3, 4, 3]

    def test_method_does_not_keep_instance_alive(self):
        calls = []

        class Device:
            @memoize
            def model(self, suffix=""):
                calls.append(self)
                return "dummy" + suffix

        device = Device()
        assert device.model() == device.model() == "dummy"
        assert device.model(suffix="-2") == "dummy-2"
        assert len(calls) == 2
        other = Device()
        other.model()
        assert len(calls) == 3  # per instance
        ref = weakref.ref(device)
        del device, calls[:]
        gc.collect()
        assert ref() is None

    def test_bounded_for_unreferenceable_arguments(self):
        calls = []

        @memoize
        def ident(x):
            calls.append(x)
            return x

        for i in range(300):
            ident(i)
        ident(299)
        assert calls.count(299) == 1  # recent: cached
        ident(0)
        assert calls.count(0) == 2  # evicted: computed again

    def test_unhashable_arguments_are_computed(self):
        calls = []

        @memoize
        def total(values):
            calls.append(1)
            return sum(values)

        assert total([1, 2]) == total([1, 2]) == 3
        assert len(calls) == 2

    async def test_async_caches_result_not_coroutine(self):
        calls = []

        @memoize
        async def fetch(key):
            calls.append(key)
            return key.upper()

        assert await fetch("a") == await fetch("a") == "A"
        assert calls == ["a"]


def test_config_defaults():
    assert config.PROGRESS_BAR is True
    assert config.MOTOR_VELOCITY_SAMPLING_TIME.to(q.ms).magnitude == pytest.approx(100)
