"""Frames per second of the dummy camera's ``grab`` against ``numpy.copyto`` of the same frame.

The camera records in AUTO mode with simulation on (exposure scaling and noise), the frame rate
set far above what can be grabbed, so ``grab`` never waits for the frame clock and measures the
cost of producing and handing out a frame (a new array each time). ``numpy.copyto`` of one such
frame into a preallocated array, in the same run, is the memory-bandwidth yardstick.
Goal: 2048 x 2048 uint16 at >= 200 frames/s.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from concert_core.devices.cameras.dummy import Camera
from concert_core.quantities import q

SIZES = ((512, 2000), (2048, 300))  # (side, frames per run)
REPEATS = 3
GOAL_FPS = 200.0


async def grab_fps(side: int, frames: int) -> tuple[float, np.ndarray]:
    """Best of REPEATS runs of ``frames`` grabs, in frames/s; also one grabbed frame."""
    camera = await Camera(width=side, height=side, dtype="uint16", simulate=True,
                          exposure_time=10 * q.us, frame_rate=1e6 / q.s)
    best = 0.0
    async with camera.recording():
        frame = await camera.grab()  # warm-up: plans and noise banks are ready
        for _ in range(REPEATS):
            start = time.perf_counter()
            for _ in range(frames):
                frame = await camera.grab()
            best = max(best, frames / (time.perf_counter() - start))
    return best, np.asarray(frame)


def copyto_fps(frame: np.ndarray, frames: int) -> float:
    """Best of REPEATS runs of ``numpy.copyto`` of ``frame`` into a preallocated array."""
    target = np.empty_like(frame)
    np.copyto(target, frame)
    best = 0.0
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(frames):
            np.copyto(target, frame)
        best = max(best, frames / (time.perf_counter() - start))
    return best


async def main() -> int:
    print(f"bench_camera: dummy Camera.grab (AUTO, simulate on, uint16) vs numpy.copyto, "
          f"best of {REPEATS} runs")
    print(f"  {'frame':>11} {'grab f/s':>10} {'grab GB/s':>10} {'copyto f/s':>11} "
          f"{'copyto GB/s':>12} {'grab/copyto':>12}")
    met = True
    for side, frames in SIZES:
        grab, frame = await grab_fps(side, frames)
        copy = copyto_fps(frame, frames)
        gigabytes = frame.nbytes / 1e9
        print(f"  {side:>5}x{side:<5} {grab:10.0f} {grab * gigabytes:10.2f} {copy:11.0f} "
              f"{copy * gigabytes:12.2f} {grab / copy:12.2f}")
        if side == 2048:
            met = grab >= GOAL_FPS
            print(f"  2048x2048 goal >= {GOAL_FPS:.0f} frames/s: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
