"""Grippers."""

from concert_core.devices.grippers.base import Gripper

__all__ = ["Gripper"]
