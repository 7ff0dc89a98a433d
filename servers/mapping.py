"""Concert -> Tango translations: states, value types, errors."""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

import numpy as np
import pint
import tango

from servers.introspect import Kind

STATES: dict[str, tango.DevState] = {
    **dict.fromkeys(("standby", "on", "released", "gripped", "stopped", "idle"),
                    tango.DevState.ON),
    "moving": tango.DevState.MOVING,
    **dict.fromkeys(("recording", "readout", "running", "pumping", "busy"),
                    tango.DevState.RUNNING),
    "open": tango.DevState.OPEN,
    "closed": tango.DevState.CLOSE,
    "off": tango.DevState.OFF,
    "hard-limit": tango.DevState.ALARM,
    "error": tango.DevState.FAULT,
    "aborted": tango.DevState.FAULT,
    "disabled": tango.DevState.DISABLE,
}

BUSY = (tango.DevState.MOVING, tango.DevState.RUNNING)


def tango_state(concert_state: str | None) -> tango.DevState:
    """The Tango state of a concert state name (contract §3); no state machine is ON."""
    if concert_state is None:
        return tango.DevState.ON
    return STATES.get(concert_state, tango.DevState.UNKNOWN)


COMMAND_TYPES: dict[Kind, Any] = {
    Kind.VOID: tango.DevVoid,
    Kind.BOOL: tango.DevBoolean,
    Kind.INT: tango.DevLong64,
    Kind.FLOAT: tango.DevDouble,
    Kind.STR: tango.DevString,
    Kind.QUANTITY: tango.DevDouble,
    Kind.INT_ARRAY: tango.DevVarLong64Array,
    Kind.FLOAT_ARRAY: tango.DevVarDoubleArray,
    Kind.STR_ARRAY: tango.DevVarStringArray,
    Kind.JSON: tango.DevString,
}

_NUMPY_TYPES = {
    np.bool_: tango.DevBoolean,
    np.uint8: tango.DevUChar,
    np.uint16: tango.DevUShort,
    np.int16: tango.DevShort,
    np.uint32: tango.DevULong,
    np.int32: tango.DevLong,
    np.uint64: tango.DevULong64,
    np.int64: tango.DevLong64,
    np.float32: tango.DevFloat,
    np.float64: tango.DevDouble,
}


def attribute_type(value: Any) -> tuple[Any, tango.AttrDataFormat, tuple[int, ...]]:
    """Tango ``(dtype, format, shape)`` for an attribute whose value looks like ``value``."""
    if isinstance(value, pint.Quantity):
        value = value.magnitude
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and value.ndim in (1, 2):
        dtype = _NUMPY_TYPES.get(value.dtype.type, tango.DevDouble)
        if value.dtype.kind in "US":
            dtype = tango.DevString
        form = tango.AttrDataFormat.SPECTRUM if value.ndim == 1 else tango.AttrDataFormat.IMAGE
        return dtype, form, value.shape
    scalar = tango.AttrDataFormat.SCALAR
    if isinstance(value, (bool, np.bool_)):
        return tango.DevBoolean, scalar, ()
    if isinstance(value, (int, np.integer)):
        return tango.DevLong64, scalar, ()
    if isinstance(value, (float, np.floating)):
        return tango.DevDouble, scalar, ()
    return tango.DevString, scalar, ()


def to_tango(value: Any, unit: pint.Unit | None, dtype: Any) -> Any:
    """A concert value as a Tango attribute value of ``dtype``."""
    if isinstance(value, pint.Quantity):
        # Most values come in the attribute's unit: skip pint's conversion (several µs).
        value = value.magnitude if unit is None or value.units == unit \
            else value.to(unit).magnitude
    if dtype == tango.DevString:
        if isinstance(value, np.ndarray):
            return [str(item) for item in value.ravel()]
        return "" if value is None else str(value)
    if isinstance(value, np.ndarray):
        return value
    if dtype == tango.DevBoolean:
        return bool(value)
    if dtype == tango.DevLong64:
        return int(value)
    if dtype == tango.DevDouble:
        return float(value)
    return value


def limit_text(limit: pint.Quantity | None) -> str:
    """A soft limit as Tango's ``min_value``/``max_value`` text."""
    return "Not specified" if limit is None else repr(float(limit.magnitude))


def limit_texts(lower: pint.Quantity | None, upper: pint.Quantity | None) -> tuple[str, str]:
    """Soft limits as Tango's ``(min_value, max_value)`` texts.

    Tango refuses ``min_value >= max_value``; a one-point interval (e.g. a camera ROI
    offset whose width fills the sensor) gets its maximum just above the minimum, so the
    one allowed value stays writable.
    """
    low, high = limit_text(lower), limit_text(upper)
    if lower is not None and upper is not None and \
            float(lower.magnitude) >= float(upper.magnitude):
        high = repr(float(np.nextafter(float(lower.magnitude), math.inf)))
    return low, high


def parse_limit_text(text: str) -> float | None:
    text = (text or "").strip()
    if not text or text.lower() in ("not specified", "nan"):
        return None
    value = float(text)
    return None if math.isnan(value) else value


def encode_result(kind: Kind, value: Any, unit: pint.Unit | None) -> Any:
    """A command's return value for Tango."""
    if kind is Kind.VOID:
        return None
    if kind is Kind.QUANTITY:
        return float(value.to(unit).magnitude) if unit is not None else float(value.magnitude)
    if kind is Kind.JSON:
        return json.dumps(value, default=str)
    if kind is Kind.STR:
        return str(value)
    if kind in (Kind.INT_ARRAY, Kind.FLOAT_ARRAY, Kind.STR_ARRAY):
        return list(value)
    return value


def throw(error: BaseException, origin: str) -> NoReturn:
    """Raise ``error`` as ``DevFailed`` whose reason is the concert error's class name."""
    if isinstance(error, tango.DevFailed):
        raise error
    reason = type(error).__name__
    description = str(error) or reason
    tango.Except.throw_exception(reason, description, origin)
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = [
    "BUSY",
    "COMMAND_TYPES",
    "STATES",
    "attribute_type",
    "encode_result",
    "limit_text",
    "limit_texts",
    "parse_limit_text",
    "tango_state",
    "throw",
    "to_tango",
]
