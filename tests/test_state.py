"""The state machine: State, check, transition."""

import asyncio

import pytest

from concert_core.base import (
    FSMError,
    HardLimitError,
    LimitError,
    Parameterizable,
    Quantity,
    State,
    StateError,
    TransitionNotAllowed,
    WriteAccessError,
    check,
    transition,
)
from concert_core.quantities import q


class Machine(Parameterizable):
    state = State(default="standby")
    door = State(default="closed")
    position = Quantity(q.mm, check=check(source="standby", target="standby"))

    async def __ainit__(self):
        await super().__ainit__()
        self._position = 0 * q.mm
        self.cleaned_up = False

    async def _get_position(self):
        return self._position

    @transition(immediate="moving", target="standby")
    async def _set_position(self, value):
        await asyncio.sleep(0.01)
        self._position = value

    @check(source="standby", target="standby")
    @transition(immediate="moving", target="standby")
    async def long_move(self):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.cleaned_up = True
            raise

    @check(source=["standby", "moving"], target="error")
    @transition(immediate="moving")
    async def crash(self):
        raise StateError("error", "motor driver overheated")

    @transition(immediate="moving", target="standby")
    async def hit_limit(self):
        raise HardLimitError("upper hard limit at 5 mm")

    @transition(immediate="moving", target="standby")
    async def bug(self):
        raise ZeroDivisionError("oops")

    @check(source="*", target="standby")
    @transition(target="standby")
    async def reset(self):
        pass

    @check(source="closed", target="open", state_name="door")
    @transition(immediate="opening", target="open", state_name="door")
    async def open_door(self):
        pass

    @check(source="standby", target="standby")
    @transition(immediate="recording", target="standby")
    async def frames(self, count):
        for index in range(count):
            await asyncio.sleep(0)
            yield index

    @check(source="standby", target="moving")
    async def wrong_target(self):
        pass


class Hardware(Parameterizable):
    state = State()

    async def __ainit__(self):
        await super().__ainit__()
        self.hardware_state = "on"

    async def _get_state(self):
        return self.hardware_state

    @transition(target="off")
    async def switch(self):
        pass


@pytest.fixture
async def machine():
    return await Machine()


async def test_default_and_read_only(machine):
    assert await machine.get_state() == "standby"
    assert not machine["state"].writable
    with pytest.raises(WriteAccessError):
        await machine["state"].set("moving")


async def test_transition_through_setter(machine):
    seen = []
    machine["state"].subscribe(lambda value, new: seen.append(new))
    await machine.set_position(1 * q.mm)
    assert seen == ["moving", "standby"]


async def test_check_refuses_wrong_source(machine):
    task = asyncio.create_task(machine.long_move())
    await asyncio.sleep(0.01)
    assert await machine.get_state() == "moving"
    with pytest.raises(TransitionNotAllowed, match="moving"):
        await machine.set_position(2 * q.mm)
    with pytest.raises(TransitionNotAllowed):
        await machine["position"].validate(2 * q.mm)
    assert await machine.get_position() == 0 * q.mm
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancellation_sets_target_and_runs_cleanup(machine):
    task = asyncio.create_task(machine.long_move())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert machine.cleaned_up
    assert await machine.get_state() == "standby"


async def test_state_error_drives_error_state(machine):
    with pytest.raises(StateError):
        await machine.crash()
    assert await machine.get_state() == "error"
    assert "overheated" in machine["state"].describe()
    with pytest.raises(TransitionNotAllowed):
        await machine.long_move()
    await machine.reset()
    assert await machine.get_state() == "standby"
    assert machine["state"].describe() == "standby"


async def test_hard_limit_error(machine):
    with pytest.raises(HardLimitError) as info:
        await machine.hit_limit()
    assert isinstance(info.value, LimitError) and isinstance(info.value, StateError)
    assert await machine.get_state() == "hard-limit"


async def test_unexpected_error_never_leaves_transient_state(machine):
    with pytest.raises(ZeroDivisionError):
        await machine.bug()
    assert await machine.get_state() == "error"
    assert "ZeroDivisionError: oops" in machine["state"].describe()


async def test_target_check_after_call(machine):
    with pytest.raises(TransitionNotAllowed, match="ended"):
        await machine.wrong_target()


async def test_two_state_machines(machine):
    await machine.open_door()
    assert await machine.get_door() == "open"
    assert await machine.get_state() == "standby"
    with pytest.raises(TransitionNotAllowed):
        await machine.open_door()


async def test_async_generators_keep_their_kind(machine):
    states = []
    async for _ in machine.frames(3):
        states.append(await machine.get_state())
    assert states == ["recording"] * 3
    assert await machine.get_state() == "standby"


async def test_async_generator_closed_early_is_not_an_error(machine):
    frames = machine.frames(10)
    async for index in frames:
        if index == 1:
            break
    await frames.aclose()
    assert await machine.get_state() == "standby"


async def test_hardware_state():
    device = await Hardware()
    assert await device.get_state() == "on"
    device.hardware_state = "off"
    assert await device.get_state() == "off"
    with pytest.raises(FSMError):
        await device.switch()


async def test_state_without_default_or_getter_is_refused():
    class Broken(Parameterizable):
        state = State()

    broken = await Broken()
    with pytest.raises(FSMError):
        broken["state"]


def test_check_refuses_plain_functions():
    with pytest.raises(TypeError):
        check()(lambda self: None)
    with pytest.raises(TypeError):
        transition()(lambda self: None)
