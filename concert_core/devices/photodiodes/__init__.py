"""Photodiodes."""

from concert_core.devices.photodiodes.base import PhotoDiode

__all__ = ["PhotoDiode"]
