"""Overhead of a stepped scan with the default dummy LinearMotor against bare sleeps.

A scan of STEPS relative moves of STEP each (``await motor.move(STEP)``) at the motor's
default speed. Pure motion time = distance / speed. The baseline awaits
``asyncio.sleep(STEP / speed)`` STEPS times: the cost of the event loop's timers alone.
Each scan runs REPEATS times; the median is reported (all runs are printed).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from concert_core.devices.motors.dummy import DEFAULT_SPEED, LinearMotor
from concert_core.quantities import q

STEPS = 100
STEP = 0.1 * q.mm
REPEATS = 5


async def motor_scan(motor: LinearMotor) -> float:
    began = time.perf_counter()
    for _ in range(STEPS):
        await motor.move(STEP)
    return time.perf_counter() - began


async def sleep_scan(seconds: float) -> float:
    began = time.perf_counter()
    for _ in range(STEPS):
        await asyncio.sleep(seconds)
    return time.perf_counter() - began


def report(name: str, walls: list[float], motion: float) -> float:
    wall = statistics.median(walls)
    overhead = wall - motion
    print(f"{name:<14} wall {wall * 1e3:8.2f} ms   motion {motion * 1e3:7.2f} ms   "
          f"overhead {overhead * 1e3:8.2f} ms total, {overhead / STEPS * 1e3:6.3f} ms/step   "
          f"(runs: {', '.join(f'{w * 1e3:.1f}' for w in walls)} ms)")
    return overhead


async def main() -> None:
    motor = await LinearMotor()
    speed = DEFAULT_SPEED * q.mm / q.s  # the default speed of the dummy
    step_time = float((STEP / speed).to(q.s).magnitude)
    motion = STEPS * step_time
    await motor_scan(motor)  # warm-up (imports, caches)
    await sleep_scan(step_time)
    motor_walls, sleep_walls = [], []
    for _ in range(REPEATS):
        await motor.set_position(0 * q.mm)
        motor_walls.append(await motor_scan(motor))
        sleep_walls.append(await sleep_scan(step_time))
    assert abs((await motor.get_position()).magnitude - STEPS * STEP.magnitude) < 1e-9
    print(f"{STEPS}-step scan of {STEP:~} at {speed:~} ({step_time * 1e3:.3f} ms motion per step), "
          f"median of {REPEATS}")
    motor_overhead = report("motor.move", motor_walls, motion)
    sleep_overhead = report("asyncio.sleep", sleep_walls, motion)
    wall_ratio = statistics.median(motor_walls) / statistics.median(sleep_walls)
    print(f"ratio motor/sleep: wall {wall_ratio:.2f}, "
          f"overhead {motor_overhead / sleep_overhead:.2f}; "
          f"motor overhead beyond the sleep baseline "
          f"{(motor_overhead - sleep_overhead) / STEPS * 1e3:.3f} ms/step")


if __name__ == "__main__":
    asyncio.run(main())
