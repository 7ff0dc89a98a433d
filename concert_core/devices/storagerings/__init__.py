"""Storage rings."""

from concert_core.devices.storagerings.base import StorageRing

__all__ = ["StorageRing"]
