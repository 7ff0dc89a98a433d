"""Light sources."""

from concert_core.devices.lightsources.base import LightSource

__all__ = ["LightSource"]
