"""Sample changers."""

from concert_core.devices.samplechangers.base import SampleChanger

__all__ = ["SampleChanger"]
