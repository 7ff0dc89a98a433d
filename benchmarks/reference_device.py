"""A minimal hand-written PyTango device: the baseline the generated servers are measured against.

Run: ``python benchmarks/reference_device.py <instance>`` (server name ``ReferenceDevice``).
"""

from __future__ import annotations

import sys

from tango import AttrWriteType
from tango.server import Device, attribute, command, run

from servers.lifeline import exit_with_parent


class ReferenceDevice(Device):
    """One read-write double ``value``; change and archive events pushed by the code, no polling."""

    value = attribute(dtype=float, access=AttrWriteType.READ_WRITE, doc="a stored double")

    def init_device(self) -> None:
        """Reset the value and declare the pushed events."""
        super().init_device()
        self._value = 0.0
        self.value_events()

    def value_events(self) -> None:
        """Events are pushed by the code (implemented=True) and sent as they are (detect=False)."""
        self.set_change_event("value", True, False)
        self.set_archive_event("value", True, False)

    def read_value(self) -> float:
        return self._value

    def write_value(self, value: float) -> None:
        self._value = value
        self.push_change_event("value", value)
        self.push_archive_event("value", value)

    @command(dtype_in=int, dtype_out=int, doc_in="number of events", doc_out="events pushed")
    def Burst(self, n: int) -> int:
        """Push *n* change events of ``value`` (value+1 each) as fast as possible."""
        for _ in range(n):
            self._value += 1.0
            self.push_change_event("value", self._value)
        return n


def main(args: list[str] | None = None) -> None:
    """Serve ReferenceDevice; the server name is ``ReferenceDevice`` whatever the file is called."""
    exit_with_parent()  # not part of the reference: it only ends the server with its bench
    run((ReferenceDevice,), args=["ReferenceDevice", *(sys.argv[1:] if args is None else args)])


if __name__ == "__main__":
    main()
