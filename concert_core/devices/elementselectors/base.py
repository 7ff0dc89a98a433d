"""Element selectors: devices that put one of a few discrete elements into the beam (filters,
screens, intensity monitors, ...).

The selected element is a :class:`~concert_core.parameter.Selection` whose choices belong to
the hardware, so it is created per device in ``__ainit__(choices)`` (``element`` for
:class:`ElementSelector`; attenuator boxes, lens changers and sample changers reuse
:class:`SelectorDevice` under their own parameter names). It can be written in ``standby``
only; changing it takes time (state ``moving``). States: ``standby``, ``moving``, ``error``;
``reset()`` leaves ``error``. Implementations provide ``_get_<name>``/``_set_<name>`` and
``_reset``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError
from concert_core.parameter import Selection
from concert_core.state import State, check


class SelectorDevice(Device):
    """A device with one discrete, per-device set of choices named ``selection_name``."""

    #: Name of the Selection parameter the device gets.
    selection_name: ClassVar[str] = "element"
    #: Its help text.
    selection_help: ClassVar[str] = "Selected element"

    state = State(default="standby", help="standby, moving (changing) or error")

    async def __ainit__(self, choices: list) -> None:
        """``choices`` are the values the selection may take (strings for Tango)."""
        await super().__ainit__()
        self.install_parameters({
            self.selection_name: Selection(
                choices, check=check(source="standby", target="standby"),
                help=self.selection_help),
        })

    @check(source=["error", "standby"], target="standby")
    async def reset(self) -> None:
        """Leave state ``error`` after a fault."""
        await self._reset()

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")


class ElementSelector(SelectorDevice):
    """Selects one of discrete elements (``element``)."""

    selection_name = "element"
    selection_help = "Element in the beam"

    async def _get_element(self) -> Any:
        raise AccessorNotImplementedError("element")

    async def _set_element(self, element: Any) -> None:
        raise AccessorNotImplementedError("element")


__all__ = ["ElementSelector", "SelectorDevice"]
