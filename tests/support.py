"""Small helpers shared by several test modules."""

from __future__ import annotations

import sys
from typing import Any

from concert_core.dataplane import ImageReceiver


def argv(server: str, instance: str) -> list[str]:
    """The command line that runs ``instance`` of the device server ``server``."""
    return [sys.executable, "-m", "servers.main", server, instance]


async def collect(receiver: ImageReceiver, **kwargs: Any) -> list[Any]:
    """Every frame ``receiver`` gets until the end of its stream."""
    return [frame async for frame in receiver.frames(**kwargs)]
