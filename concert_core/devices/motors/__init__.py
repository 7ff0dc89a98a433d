"""Motors: linear and rotational, positioned or continuous (see :mod:`.base`, :mod:`.dummy`)."""

from concert_core.devices.motors.base import (
    ContinuousLinearMotor,
    ContinuousRotationMotor,
    LinearMotor,
    RotationMotor,
)

__all__ = ["ContinuousLinearMotor", "ContinuousRotationMotor", "LinearMotor", "RotationMotor"]
