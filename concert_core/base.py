"""Concert's core objects in one place: parameters, state machine, errors, async objects."""

from concert_core.asyncobject import AsyncObject
from concert_core.errors import (
    AccessorNotImplementedError,
    ConcertError,
    FSMError,
    HardLimitError,
    LimitError,
    LockError,
    ParameterError,
    ReadAccessError,
    SelectionError,
    SoftLimitError,
    StateError,
    TransitionNotAllowed,
    UnitError,
    WaitError,
    WriteAccessError,
)
from concert_core.parameter import (
    Parameter,
    ParameterValue,
    Quantity,
    QuantityValue,
    Selection,
    SelectionValue,
)
from concert_core.parameterizable import Parameterizable
from concert_core.state import State, StateValue, check, transition

__all__ = [
    "AccessorNotImplementedError",
    "AsyncObject",
    "ConcertError",
    "FSMError",
    "HardLimitError",
    "LimitError",
    "LockError",
    "Parameter",
    "ParameterError",
    "ParameterValue",
    "Parameterizable",
    "Quantity",
    "QuantityValue",
    "ReadAccessError",
    "Selection",
    "SelectionError",
    "SelectionValue",
    "SoftLimitError",
    "State",
    "StateError",
    "StateValue",
    "TransitionNotAllowed",
    "UnitError",
    "WaitError",
    "WriteAccessError",
    "check",
    "transition",
]
