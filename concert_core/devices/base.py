"""The base of every device family."""

from __future__ import annotations

import asyncio
from typing import Any

from concert_core.parameter import QuantityValue
from concert_core.parameterizable import Parameterizable
from concert_core.quantities import unit_symbol


class Device(Parameterizable):
    """A piece of hardware: parameters, a state machine where it has one, and methods.

    ``async with device:`` gives a coroutine exclusive use of the device.
    :meth:`emergency_stop` brings it to a standstill (``_emergency_stop`` implements it).
    """

    def _device_lock(self) -> asyncio.Lock:
        lock = self.__dict__.get("_lock")
        if lock is None:
            lock = self.__dict__["_lock"] = asyncio.Lock()
        return lock

    async def __aenter__(self) -> Device:
        await self._device_lock().acquire()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._device_lock().release()

    async def emergency_stop(self) -> None:
        """Stop everything the device does, at once."""
        implementation = getattr(self, "_emergency_stop", None)
        if implementation is not None:
            await implementation()

    async def parameter_table(self) -> str:
        """Read every readable parameter and return them as a text table."""
        rows = []
        for value in self:
            if value.readable:
                try:
                    rows.append((value, await value.get()))
                except Exception as error:  # a table must show what failed, not stop
                    rows.append((value, f"<{type(error).__name__}: {error}>"))
            else:
                rows.append((value, "<write-only>"))
        return self._format_table(rows)

    def _format_table(self, rows: list[tuple[Any, Any]]) -> str:
        lines = [("Parameter", "Value", "Unit", "Access")]
        for value, current in rows:
            unit = unit_symbol(value.unit) if isinstance(value, QuantityValue) else ""
            shown = f"{current.magnitude:.6g}" if hasattr(current, "magnitude") and \
                not hasattr(current.magnitude, "shape") else str(current)
            access = ("r" if value.readable else "") + ("w" if value.writable else "")
            lines.append((value.name, shown, unit, access))
        widths = [max(len(str(row[i])) for row in lines) for i in range(4)]
        text = [" ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
                .rstrip() for row in lines]
        text.insert(1, " ".join("-" * width for width in widths))
        return f"{type(self).__name__}\n" + "\n".join(text)

    def __str__(self) -> str:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            from concert_core.parameter import blocking

            return blocking(self.parameter_table(), "str(device)")
        # inside a loop nothing may block: show the last known values
        return self._format_table([(value, value.last_value) for value in self])


__all__ = ["Device"]
