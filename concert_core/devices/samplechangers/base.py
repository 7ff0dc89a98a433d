"""Sample changers move samples in and out of the sample holder.

``sample`` is a per-device Selection of the samples in the magazine (see
:class:`~concert_core.devices.elementselectors.base.SelectorDevice`), writable in ``standby``;
changing takes time (state ``moving``). Implementations provide ``_get_sample``/
``_set_sample`` and ``_reset``.
"""

from __future__ import annotations

from typing import Any

from concert_core.devices.elementselectors.base import SelectorDevice
from concert_core.errors import AccessorNotImplementedError


class SampleChanger(SelectorDevice):
    """A device that moves samples in and out from the sample holder."""

    selection_name = "sample"
    selection_help = "Sample on the sample holder ('none' when empty, where offered)"

    async def _get_sample(self) -> Any:
        raise AccessorNotImplementedError("sample")

    async def _set_sample(self, sample: Any) -> None:
        raise AccessorNotImplementedError("sample")


__all__ = ["SampleChanger"]
