"""Device: locking, emergency stop, table, garbage collection, logging names, arguments."""

import asyncio
import gc
import weakref

import pytest

from concert_core.arguments import InUnitOf, UnitOf, argument_units
from concert_core.base import Parameter, Quantity, State, transition
from concert_core.devices.base import Device
from concert_core.naming import camel_case, snake_case
from concert_core.quantities import q


class Slit(Device):
    state = State(default="standby")
    gap = Quantity(q.mm, lower=0 * q.mm, upper=20 * q.mm, help="gap")
    label = Parameter(help="label")

    async def __ainit__(self):
        await super().__ainit__()
        self._gap = 1 * q.mm
        self._label = "slit"
        self.stopped = False

    async def _get_gap(self):
        return self._gap

    async def _set_gap(self, value):
        self._gap = value

    async def _get_label(self):
        return self._label

    @transition(immediate="moving", target="standby")
    async def open_by(self, delta: InUnitOf("gap")) -> None:
        await asyncio.sleep(0.01)
        self._gap += delta

    async def _emergency_stop(self):
        self.stopped = True


async def test_async_with_gives_exclusive_access():
    slit = await Slit()
    order = []

    async def user(name):
        async with slit:
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    await asyncio.gather(user("a"), user("b"))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


async def test_parameter_lock_context():
    slit = await Slit()
    async with slit["gap"]:
        await slit.set_gap(2 * q.mm)
    assert await slit.get_gap() == 2 * q.mm


async def test_emergency_stop_calls_implementation():
    slit = await Slit()
    await slit.emergency_stop()
    assert slit.stopped


async def test_emergency_stop_without_implementation():
    class Quiet(Device):
        pass

    await (await Quiet()).emergency_stop()


async def test_parameter_table():
    slit = await Slit()
    table = await slit.parameter_table()
    assert table.splitlines()[0] == "Slit"
    assert "gap" in table and "mm" in table and "rw" in table
    assert "standby" in table
    assert "label" in table and "slit" in table


def test_str_outside_a_loop_reads_values():
    from concert_core.coroutines.base import run_in_loop

    slit = run_in_loop(Slit())
    text = str(slit)
    assert "gap" in text and "1" in text


async def test_str_inside_a_loop_does_not_block():
    slit = await Slit()
    await slit.get_gap()
    assert "gap" in str(slit)


async def test_dropped_device_is_garbage_collected():
    slit = await Slit()
    await slit.set_gap(3 * q.mm)
    await slit.open_by(1 * q.mm)
    slit["gap"].subscribe(lambda value, new: None)
    str(slit)
    ref = weakref.ref(slit)
    del slit
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize(("method", "command"), [
    ("move", "Move"), ("start_recording", "StartRecording"),
    ("emergency_stop", "EmergencyStop"), ("get_last_tune_scan", "GetLastTuneScan")])
def test_method_and_command_names_round_trip(method, command):
    assert camel_case(method) == command
    assert snake_case(command) == method


async def test_logger_name():
    slit = await Slit()
    assert slit.logger.name.endswith("Slit")


def test_argument_units():
    units = argument_units(Slit.open_by)
    assert units == {"delta": UnitOf("gap")}
    assert units["delta"].unit(Slit) == q.mm
    assert UnitOf(q.s).unit(Slit) == q.s


@pytest.mark.parametrize("reference", [q.s, 1 * q.s])
def test_in_unit_of_accepts_units(reference):
    async def wait(self, duration: InUnitOf(reference)) -> None:
        pass

    assert argument_units(wait)["duration"].unit(None) == q.s
