"""Digital I/O and binary signals."""

from concert_core.devices.io.base import IO, Signal

__all__ = ["IO", "Signal"]
