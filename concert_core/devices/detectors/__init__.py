"""Detectors: a camera with magnifying optics (``base``) and a simulated one (``dummy``)."""

from concert_core.devices.detectors.base import Detector

__all__ = ["Detector"]
