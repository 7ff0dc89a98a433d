"""Small helpers shared by several test modules."""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from concert_core.dataplane import ImageReceiver


def argv(server: str, instance: str) -> list[str]:
    """The command line that runs ``instance`` of the device server ``server``."""
    return [sys.executable, "-m", "servers.main", server, instance]


def spy_on(proxy: Any, method: str) -> list[tuple[str, ...]]:
    """The attribute names each later ``method`` call of ``proxy`` (a real DeviceProxy:
    ``read_attributes``, ``write_read_attributes``, ...) names first, one tuple per call;
    the calls themselves go through unchanged."""
    calls: list[tuple[str, ...]] = []
    original = getattr(proxy, method)

    def spy(names: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(tuple(name if isinstance(name, str) else name[0] for name in names))
        return original(names, *args, **kwargs)

    with warnings.catch_warnings():  # PyTango warns that the interface is open now
        warnings.simplefilter("ignore")
        proxy.unfreeze_dynamic_interface()
    setattr(proxy, method, spy)
    return calls


async def collect(receiver: ImageReceiver, **kwargs: Any) -> list[Any]:
    """Every frame ``receiver`` gets until the end of its stream."""
    return [frame async for frame in receiver.frames(**kwargs)]


def prepare_walker_and_camera(tango_servers: Any, instance: str, walker: str, camera: str,
                              root: Path, source: Path, stream_timeout: str,
                              frame_rate: str) -> list[Any]:
    """Prepare (not start) ``instance`` of a walker server with device ``walker`` below
    ``root`` and of a camera server with a FileCamera ``camera`` serving the TIFF files
    of ``source`` (exposure 0.1 ms); return both, for ``tango_servers.start_all``."""
    return [
        tango_servers.prepare(
            argv("ConcertWalker", instance), "ConcertWalker", instance,
            {"DirectoryWalker": [walker]},
            {walker: {"root": [str(root)],
                      "concert_args": [json.dumps({"stream_timeout": stream_timeout})]}}),
        tango_servers.prepare(
            argv("ConcertCamera", instance), "ConcertCamera", instance, {"Camera": [camera]},
            {camera: {"concert_class": ["concert_core.devices.cameras.dummy:FileCamera"],
                      "concert_args": [json.dumps({"pattern_or_directory": str(source),
                                                   "frame_rate": frame_rate,
                                                   "exposure_time": "0.1 ms"})]}}),
    ]


async def overshoots(pause: Callable[[float], Awaitable[Any]], seconds: float,
                     times: int = 30, rounds: int = 10) -> list[list[float]]:
    """Run ``pause(seconds)`` ``times`` times in each of ``rounds`` rounds; per round, how
    much later than asked each pause ended, sorted (seconds). A busy host only ever makes
    pauses later, so the best round shows what the code does (three rounds were not
    always enough while the test run's servers and a steal of 10 % shared two cores)."""
    result = []
    for _ in range(rounds):
        late = []
        for _ in range(times):
            began = time.monotonic()
            await pause(seconds)
            late.append(time.monotonic() - began - seconds)
        result.append(sorted(late))
    return result
