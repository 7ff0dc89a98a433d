"""Parameter, Quantity, Selection and Parameterizable: values, limits, locks, stash, observers."""

import asyncio

import numpy as np
import pytest

from concert_core.base import (
    AccessorNotImplementedError,
    LockError,
    Parameter,
    ParameterError,
    Parameterizable,
    Quantity,
    ReadAccessError,
    Selection,
    SelectionError,
    SoftLimitError,
    UnitError,
    WaitError,
    WriteAccessError,
)
from concert_core.quantities import q


class Stage(Parameterizable):
    """A stand-in device with every kind of accessor."""

    position = Quantity(q.mm, lower=-10 * q.mm, upper=10 * q.mm, help="Stage position")
    speed = Quantity(q.mm / q.s, help="read-only speed")
    note = Parameter(help="free text")
    secret = Parameter(help="write-only")
    mode = Selection(["fast", "slow"], help="mode")
    fraction = Quantity(q.dimensionless)

    async def __ainit__(self, position=0 * q.mm):
        await super().__ainit__()
        self._position = position
        self._target = position
        self._note = "hello"
        self._secret = None
        self._mode = "fast"
        self._fraction = 0.5 * q.dimensionless
        self.setter_saw = []

    async def _get_position(self):
        return self._position

    async def _get_target_position(self):
        return self._target

    async def _set_position(self, value):
        self.setter_saw.append(value)
        self._target = value
        self._position = value

    async def _get_speed(self):
        return 2000 * q.um / q.s  # a compatible unit; must come back in mm/s

    async def _get_note(self):
        return self._note

    async def _set_note(self, value):
        self._note = value

    async def _set_secret(self, value):
        self._secret = value

    async def _get_mode(self):
        return self._mode

    async def _set_mode(self, value):
        self._mode = value

    async def _get_fraction(self):
        return self._fraction

    async def _set_fraction(self, value):
        self._fraction = value


class Controller(Parameterizable):
    """Limits from a controller (external) and user limits kept elsewhere (hooks)."""

    async def _external_lower(self):
        return -5 * q.mm

    async def _external_upper(self):
        return 5 * q.mm

    def _user_lower(self):
        return self.stored_lower

    def _store_lower(self, value):
        self.stored_lower = value

    position = Quantity(
        q.mm,
        external_lower_getter=_external_lower,
        external_upper_getter=_external_upper,
        user_lower_getter=_user_lower,
        user_lower_setter=_store_lower,
        upper=100 * q.mm,
    )

    async def __ainit__(self):
        await super().__ainit__()
        self.stored_lower = -10 * q.mm
        self._position = 0 * q.mm

    async def _get_position(self):
        return self._position

    async def _set_position(self, value):
        self._position = value


@pytest.fixture
async def stage():
    return await Stage()


async def test_get_set_and_generated_methods(stage):
    await stage.set_position(2 * q.mm)
    assert await stage.get_position() == 2 * q.mm
    assert await stage["position"].get() == 2 * q.mm
    assert await stage.get_target_position() == 2 * q.mm


async def test_setter_sees_declared_unit_getter_converted(stage):
    await stage.set_position(1500 * q.um)
    assert stage.setter_saw[-1].units == q.mm
    assert stage.setter_saw[-1].magnitude == pytest.approx(1.5)
    speed = await stage.get_speed()
    assert speed.units == q.mm / q.s
    assert speed.magnitude == pytest.approx(2)


@pytest.mark.parametrize("bad", [1 * q.s, 3, "3 mm", None])
async def test_unit_error_leaves_value(stage, bad):
    await stage.set_position(1 * q.mm)
    with pytest.raises(UnitError):
        await stage.set_position(bad)
    assert await stage.get_position() == 1 * q.mm


async def test_dimensionless_accepts_plain_numbers(stage):
    await stage.set_fraction(0.25)
    assert await stage.get_fraction() == 0.25 * q.dimensionless


async def test_soft_limit_error_names_value_and_range(stage):
    await stage.set_position(1 * q.mm)
    with pytest.raises(SoftLimitError, match=r"12 mm.*\[-10 mm, 10 mm\]"):
        await stage.set_position(12 * q.mm)
    with pytest.raises(SoftLimitError):
        await stage.set_position(-1 * q.cm - 1 * q.um)
    assert await stage.get_position() == 1 * q.mm
    await stage.set_position(10 * q.mm)  # the limit itself is allowed


async def test_limits_get_set_and_crossing(stage):
    param = stage["position"]
    await param.set_lower(-2 * q.mm)
    await param.set_upper(0.5 * q.cm)
    assert await param.get_lower() == -2 * q.mm
    assert (await param.get_upper()).to(q.mm).magnitude == pytest.approx(5)
    with pytest.raises(ValueError, match="cross"):
        await param.set_lower(6 * q.mm)
    with pytest.raises(ValueError, match="cross"):
        await param.set_upper(-3 * q.mm)
    with pytest.raises(UnitError):
        await param.set_lower(1 * q.s)
    assert await param.get_limits() == (-2 * q.mm, 5 * q.mm)
    await param.set_upper(None)
    assert await param.get_upper() is None
    await stage.set_position(9 * q.mm)


async def test_limits_are_per_instance():
    first, second = await Stage(), await Stage()
    await first["position"].set_upper(1 * q.mm)
    assert await second["position"].get_upper() == 10 * q.mm


async def test_limit_lock(stage):
    param = stage["position"]
    param.lock_limits()
    with pytest.raises(LockError):
        await param.set_lower(-1 * q.mm)
    param.unlock_limits()
    await param.set_lower(-1 * q.mm)
    param.lock_limits(permanent=True)
    with pytest.raises(LockError):
        param.unlock_limits()
    assert await param.get_lower() == -1 * q.mm


async def test_external_and_user_limits_intersect():
    controller = await Controller()
    param = controller["position"]
    assert await param.get_limits() == (-5 * q.mm, 5 * q.mm)
    await param.set_lower(-1 * q.mm)  # goes through the user setter hook
    assert controller.stored_lower == -1 * q.mm
    assert await param.get_lower() == -1 * q.mm
    with pytest.raises(SoftLimitError):
        await controller.set_position(-2 * q.mm)
    with pytest.raises(SoftLimitError):
        await controller.set_position(6 * q.mm)  # user upper is 100 mm, external 5 mm
    await controller.set_position(4 * q.mm)


async def test_limit_observers(stage):
    seen = []
    unsubscribe = stage["position"].subscribe_limits(lambda value: seen.append(value.name))
    await stage["position"].set_lower(-1 * q.mm)
    unsubscribe()
    await stage["position"].set_lower(-2 * q.mm)
    assert seen == ["position"]


async def test_lock_and_unlock(stage):
    param = stage["position"]
    param.lock()
    assert param.locked
    with pytest.raises(LockError):
        await stage.set_position(1 * q.mm)
    assert await stage.get_position() == 0 * q.mm
    param.unlock()
    await stage.set_position(1 * q.mm)
    param.lock(permanent=True)
    with pytest.raises(LockError):
        param.unlock()


async def test_lock_whole_object(stage):
    stage.lock()
    with pytest.raises(LockError):
        await stage.set_note("x")
    stage.unlock()
    await stage.set_note("x")
    stage.lock(permanent=True)
    with pytest.raises(LockError):
        stage.unlock()


async def test_access_errors(stage):
    with pytest.raises(WriteAccessError):
        await stage["speed"].set(1 * q.mm / q.s)
    with pytest.raises(ReadAccessError):
        await stage["secret"].get()
    await stage["secret"].set("x")
    assert stage["secret"].writable and not stage["secret"].readable
    assert not stage["speed"].writable
    with pytest.raises(ReadAccessError):
        await stage["note"].get_target()


async def test_accessor_not_implemented_becomes_access_error():
    class Abstract(Parameterizable):
        value = Parameter()

        async def _get_value(self):
            raise AccessorNotImplementedError

        async def _set_value(self, value):
            raise AccessorNotImplementedError

    obj = await Abstract()
    with pytest.raises(ReadAccessError):
        await obj.get_value()
    with pytest.raises(WriteAccessError):
        await obj.set_value(1)


async def test_selection(stage):
    assert stage["mode"].values == ["fast", "slow"]
    await stage.set_mode("slow")
    with pytest.raises(SelectionError, match="medium"):
        await stage.set_mode("medium")
    assert await stage.get_mode() == "slow"


def test_empty_selection_is_refused():
    with pytest.raises(ValueError):
        Selection([])


async def test_stash_restore_is_a_stack(stage):
    await stage.set_position(1 * q.mm)
    await stage["position"].stash()
    await stage.set_position(2 * q.mm)
    await stage["position"].stash()
    await stage.set_position(3 * q.mm)
    await stage["position"].restore()
    assert await stage.get_position() == 2 * q.mm
    await stage["position"].restore()
    assert await stage.get_position() == 1 * q.mm
    await stage["position"].restore()  # nothing saved: nothing happens
    assert await stage.get_position() == 1 * q.mm


async def test_stash_takes_the_target(stage):
    await stage.set_position(1 * q.mm)
    stage._position = 0.9 * q.mm  # the hardware has not arrived yet
    await stage["position"].stash()
    await stage.set_position(5 * q.mm)
    await stage["position"].restore()
    assert await stage.get_position() == 1 * q.mm


async def test_whole_object_stash_skips_read_only(stage):
    await stage.set_note("a")
    await stage.set_mode("slow")
    await stage.stash()
    await stage.set_note("b")
    await stage.set_mode("fast")
    await stage.restore()
    assert await stage.get_note() == "a"
    assert await stage.get_mode() == "slow"


async def test_wait_and_wait_error(stage):
    async def later():
        await asyncio.sleep(0.05)
        await stage.set_note("done")

    task = asyncio.create_task(later())
    await stage["note"].wait("done", sleep_time=0.01 * q.s, timeout=2 * q.s)
    await task
    with pytest.raises(WaitError, match="never"):
        await stage["note"].wait("never", sleep_time=0.01 * q.s, timeout=0.05 * q.s)


async def test_quantity_wait_with_eps(stage):
    await stage.set_position(1 * q.mm)
    await stage["position"].wait(1.05 * q.mm, eps=0.1 * q.mm, timeout=0.1 * q.s)
    with pytest.raises(WaitError):
        await stage["position"].wait(2 * q.mm, eps=0.1 * q.mm, sleep_time=0.01 * q.s,
                                     timeout=0.05)


async def test_wait_on(stage):
    order = []

    async def first():
        await asyncio.sleep(0.02)
        order.append("first")

    await stage["note"].set("x", wait_on=first())
    order.append("set")
    assert order == ["first", "set"]
    assert await stage["note"].get(wait_on=asyncio.sleep(0)) == "x"


async def test_observers_see_sets_reads_and_notifications(stage):
    seen = []
    unsubscribe = stage["position"].subscribe(lambda value, new: seen.append(new))
    await stage.set_position(1 * q.mm)
    stage._position = 1.5 * q.mm  # changed behind our back: a read announces it
    await stage.get_position()
    await stage.get_position()  # unchanged: no second announcement
    stage["position"].notify(1.7 * q.mm)
    unsubscribe()
    await stage.set_position(3 * q.mm)
    assert seen == [1 * q.mm, 1.5 * q.mm, 1.7 * q.mm]


async def test_failing_observer_does_not_break_set(stage, caplog):
    def broken(value, new):
        raise RuntimeError("observer bug")

    stage["note"].subscribe(broken)
    await stage.set_note("fine")
    assert await stage.get_note() == "fine"
    assert "observer" in caplog.text


async def test_refused_set_does_not_notify(stage):
    seen = []
    stage["position"].subscribe(lambda value, new: seen.append(new))
    with pytest.raises(SoftLimitError):
        await stage.set_position(50 * q.mm)
    assert seen == []


async def test_validate_does_not_touch_the_device(stage):
    value = await stage["position"].validate(2000 * q.um)
    assert value == 2 * q.mm and value.units == q.mm
    assert stage.setter_saw == []


async def test_array_quantity():
    class Detector(Parameterizable):
        roi = Quantity(q.pixel, lower=0 * q.pixel, upper=100 * q.pixel)

        async def __ainit__(self):
            self._roi = np.array([0, 0]) * q.pixel

        async def _get_roi(self):
            return self._roi

        async def _set_roi(self, value):
            self._roi = value

    detector = await Detector()
    await detector.set_roi(np.array([10, 20]) * q.pixel)
    assert list((await detector.get_roi()).magnitude) == [10, 20]
    with pytest.raises(SoftLimitError):
        await detector.set_roi(np.array([10, 200]) * q.pixel)


async def test_parameterizable_access(stage):
    assert [value.name for value in stage] == sorted(
        ["position", "speed", "note", "secret", "mode", "fraction"])
    assert "position" in stage and "nothing" not in stage
    with pytest.raises(ParameterError, match="nothing"):
        stage["nothing"]
    assert stage["position"] is stage["position"]
    assert stage["position"].help == "Stage position"
    assert stage["position"].unit == q.mm


async def test_install_parameters_keeps_class():
    obj = await Stage()
    other = await Stage()
    store = {}

    async def get_extra(instance):
        return store.get("extra", 0 * q.s)

    async def set_extra(instance, value):
        store["extra"] = value

    obj.install_parameters({"extra": Quantity(q.s, fget=get_extra, fset=set_extra)})
    assert type(obj) is Stage
    await obj.set_extra(2 * q.ms)
    assert (await obj["extra"].get()).to(q.ms).magnitude == pytest.approx(2)
    assert "extra" in obj and "extra" not in other
    assert "extra" in [value.name for value in obj]
    with pytest.raises(ValueError):
        obj.install_parameters({"position": Parameter()})


def test_blocking_access_outside_a_loop():
    from concert_core.coroutines.base import run_in_loop

    stage = run_in_loop(Stage())
    stage.position = 3 * q.mm
    assert stage.position == 3 * q.mm
    stage["position"].lower = -1 * q.mm
    assert stage["position"].lower == -1 * q.mm
    with pytest.raises(SoftLimitError):
        stage.position = -2 * q.mm


async def test_blocking_access_inside_a_loop_is_refused(stage):
    with pytest.raises(RuntimeError, match="await"):
        stage.position  # noqa: B018
    with pytest.raises(RuntimeError, match="await"):
        stage.position = 1 * q.mm
