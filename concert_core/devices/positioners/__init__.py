"""Positioners: motors on Euclidean axes combined into 3D motion (see :mod:`.base`)."""

from concert_core.devices.positioners.base import Axis, Positioner

__all__ = ["Axis", "Positioner"]
