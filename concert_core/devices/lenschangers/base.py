"""Lens changers switch motorized objectives (e.g. of an indirect detector).

``objective`` is a per-device Selection (see
:class:`~concert_core.devices.elementselectors.base.SelectorDevice`): writable in
``standby``; changing takes time (state ``moving``). Implementations provide
``_get_objective``/``_set_objective`` and ``_reset``.
"""

from __future__ import annotations

from typing import Any

from concert_core.devices.elementselectors.base import SelectorDevice
from concert_core.errors import AccessorNotImplementedError


class LensChanger(SelectorDevice):
    """Lens changer base class."""

    selection_name = "objective"
    selection_help = "Objective in use"

    async def _get_objective(self) -> Any:
        raise AccessorNotImplementedError("objective")

    async def _set_objective(self, objective: Any) -> None:
        raise AccessorNotImplementedError("objective")


__all__ = ["LensChanger"]
