"""Attenuator boxes."""

from concert_core.devices.attenuatorboxes.base import AttenuatorBox

__all__ = ["AttenuatorBox"]
