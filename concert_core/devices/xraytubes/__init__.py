"""X-ray tubes."""

from concert_core.devices.xraytubes.base import XRayTube

__all__ = ["XRayTube"]
