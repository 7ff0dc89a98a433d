"""Cameras: the :class:`Camera` family (``base``) and simulated cameras (``dummy``)."""

from concert_core.devices.cameras.base import (
    TRIGGER_SOURCES,
    BufferedMixin,
    Camera,
    CameraError,
    FramesExhaustedError,
)

__all__ = ["TRIGGER_SOURCES", "BufferedMixin", "Camera", "CameraError", "FramesExhaustedError"]
