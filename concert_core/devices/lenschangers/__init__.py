"""Lens changers."""

from concert_core.devices.lenschangers.base import LensChanger

__all__ = ["LensChanger"]
