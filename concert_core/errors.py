"""Every error class of the core.

The Tango bridge sends a refusal as ``DevFailed`` whose reason is the class name of
the error raised here, so these names are part of the outside contract: do not rename.
"""

from __future__ import annotations


class ConcertError(Exception):
    """Base of the suite's own errors."""


class ParameterError(ConcertError, KeyError):
    """A parameter was asked for by a name the object does not have."""

    def __init__(self, parameter: str, owner: object | None = None) -> None:
        self.parameter = parameter
        where = f" of {type(owner).__name__}" if owner is not None else ""
        super().__init__(f"no parameter {parameter!r}{where}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnitError(ConcertError, ValueError):
    """A value came with a unit that cannot be converted into the declared one."""


class LimitError(ConcertError, ValueError):
    """A value lies outside a limit."""


class SoftLimitError(LimitError):
    """A value lies outside a Quantity's soft limits."""


class LockError(ConcertError):
    """A locked parameter, limit or device was written to, or a permanent lock was undone."""


class AccessorNotImplementedError(ConcertError, NotImplementedError):
    """A getter or setter a device family declares is not implemented by the device."""


class ReadAccessError(ConcertError):
    """A parameter that cannot be read was read."""

    def __init__(self, parameter: str) -> None:
        self.parameter = parameter
        super().__init__(f"parameter {parameter!r} cannot be read")


class WriteAccessError(ConcertError):
    """A parameter that cannot be written was written."""

    def __init__(self, parameter: str) -> None:
        self.parameter = parameter
        super().__init__(f"parameter {parameter!r} cannot be written")


class SelectionError(ConcertError, ValueError):
    """A value is not one of a Selection's choices."""


class FSMError(ConcertError):
    """A state machine was used wrongly."""


class TransitionNotAllowed(FSMError):
    """An action is not allowed in the current state, or ended in a state it must not."""


class StateError(ConcertError):
    """Raised inside a transition to drive the state machine into ``error_state``."""

    def __init__(self, error_state: str, msg: str | None = None) -> None:
        self.error_state = error_state
        self.msg = msg
        super().__init__(msg if msg is not None else error_state)


class HardLimitError(StateError, LimitError):
    """A motion reached a hard limit; the device is left in state ``hard-limit``."""

    def __init__(self, msg: str | None = None) -> None:
        StateError.__init__(self, "hard-limit", msg or "hard limit reached")


class WaitError(ConcertError, TimeoutError):
    """A wait for a value or condition timed out."""


__all__ = [
    "ConcertError",
    "ParameterError",
    "UnitError",
    "LimitError",
    "SoftLimitError",
    "LockError",
    "AccessorNotImplementedError",
    "ReadAccessError",
    "WriteAccessError",
    "SelectionError",
    "FSMError",
    "TransitionNotAllowed",
    "StateError",
    "HardLimitError",
    "WaitError",
]
