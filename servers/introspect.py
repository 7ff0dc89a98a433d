"""What a concert device class offers to the outside: its parameters and its commands.

This module reads declarations only (Parameters, method signatures and annotations); it
never instantiates a device and never imports Tango, so the same description can be
tested without a Tango database.
"""

from __future__ import annotations

import enum
import inspect
import logging
import typing
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

import numpy as np
import pint

from concert_core.arguments import UnitOf
from concert_core.naming import camel_case
from concert_core.parameter import Parameter, Quantity, Selection
from concert_core.state import State

LOG = logging.getLogger(__name__)

#: Methods of the Parameterizable/Device machinery published under fixed names.
OBJECT_COMMANDS = {
    "stash": "Stash",
    "restore": "Restore",
    "lock": "Lock",
    "unlock": "Unlock",
    "emergency_stop": "EmergencyStop",
}

#: Methods never published (machinery, or not meaningful remotely).
HIDDEN = {"parameter_table", "install_parameters", "logger", "inject_fault", "clear_fault",
          "read_values"}


class Kind(enum.Enum):
    """How a value travels: the Tango side picks a dtype from it."""

    VOID = "void"
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STR = "str"
    QUANTITY = "quantity"
    INT_ARRAY = "int_array"
    FLOAT_ARRAY = "float_array"
    STR_ARRAY = "str_array"
    JSON = "json"


@dataclass(frozen=True)
class Argument:
    name: str
    kind: Kind
    unit: UnitOf | None = None
    default: Any = inspect.Parameter.empty


@dataclass(frozen=True)
class CommandSpec:
    """A public coroutine method published as a command."""

    method: str
    name: str
    arguments: tuple[Argument, ...]
    result: Kind
    result_unit: UnitOf | None
    background: bool
    doc: str
    #: The method's ``*name`` argument: any number of values of its kind after the others.
    rest: Argument | None = None

    @property
    def packed(self) -> bool:
        """True if several arguments travel as one array (Tango commands take one argin)."""
        return len(self.arguments) > 1 or self.rest is not None


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    parameter: Parameter = field(repr=False)

    @property
    def is_quantity(self) -> bool:
        return isinstance(self.parameter, Quantity)

    @property
    def is_selection(self) -> bool:
        return isinstance(self.parameter, Selection)

    @property
    def is_state(self) -> bool:
        return isinstance(self.parameter, State)


def parameters_of(cls: type) -> list[ParameterSpec]:
    """The parameters of a Parameterizable class in name order (State machines included)."""
    return [ParameterSpec(name, parameter)
            for name, parameter in sorted(cls._class_parameters.items())]


def _kind_of(hint: Any) -> tuple[Kind, UnitOf | None]:
    """Map a type annotation to a transport kind (and a unit for quantities)."""
    if hint is None or hint is type(None):
        return Kind.VOID, None
    for extra in getattr(hint, "__metadata__", ()):
        if isinstance(extra, UnitOf):
            return Kind.QUANTITY, extra
    origin = get_origin(hint)
    if origin is typing.Annotated:
        return _kind_of(get_args(hint)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        members = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(members) == 1:
            return _kind_of(members[0])
        return Kind.JSON, None
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        args = [arg for arg in get_args(hint) if arg is not Ellipsis]
        if args and all(arg is str for arg in args):
            return Kind.STR_ARRAY, None
        if args and all(arg in (int, bool) for arg in args):
            return Kind.INT_ARRAY, None
        if args and all(arg in (int, float) for arg in args):
            return Kind.FLOAT_ARRAY, None
        return Kind.JSON, None
    simple = {bool: Kind.BOOL, int: Kind.INT, float: Kind.FLOAT, str: Kind.STR,
              np.ndarray: Kind.FLOAT_ARRAY}
    if hint in simple:
        return simple[hint], None
    if hint is pint.Quantity:
        return Kind.QUANTITY, None  # unit unknown: refused by commands_of
    return Kind.JSON, None


def _is_hidden(cls: type, name: str) -> bool:
    if name.startswith("_") or name in HIDDEN:
        return True
    parameters = cls._class_parameters
    for prefix in ("get_target_", "get_", "set_"):
        if name.startswith(prefix) and name[len(prefix):] in parameters:
            return True
    return False


def commands_of(cls: type) -> list[CommandSpec]:
    """The commands a concert device class offers, in name order.

    Public coroutine functions become commands; ``stash``, ``restore``, ``lock``,
    ``unlock`` and ``emergency_stop`` are always there. A method whose arguments cannot
    travel as one Tango argin (e.g. a vector of quantities) is left out with a log note.
    """
    found: dict[str, CommandSpec] = {}
    for name in dir(cls):
        if name in OBJECT_COMMANDS:
            found[name] = _object_command(cls, name)
            continue
        if _is_hidden(cls, name):
            continue
        member = inspect.getattr_static(cls, name, None)
        if isinstance(member, (staticmethod, classmethod, property)) or not callable(member):
            continue
        target = inspect.unwrap(member)
        if not inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target):
            continue
        spec = _command(cls, name, member)
        if spec is not None:
            found[name] = spec
    return [found[name] for name in sorted(found)]


def _object_command(cls: type, name: str) -> CommandSpec:
    arguments: tuple[Argument, ...] = ()
    if name == "lock":
        arguments = (Argument("permanent", Kind.BOOL, default=False),)
    docs = {
        "stash": "Save every writable parameter on a stack.",
        "restore": "Restore the parameters saved by Stash.",
        "lock": "Lock every parameter for writing (argin: permanent).",
        "unlock": "Unlock every parameter.",
        "emergency_stop": "Stop everything the device does, at once.",
    }
    return CommandSpec(method=name, name=OBJECT_COMMANDS[name], arguments=arguments,
                       result=Kind.VOID, result_unit=None, background=False,
                       doc=docs[name])


def _command(cls: type, name: str, member: Any) -> CommandSpec | None:
    try:
        hints = typing.get_type_hints(member, include_extras=True)
    except Exception as error:  # unresolvable annotations: not publishable
        LOG.info("%s.%s not published: %s", cls.__name__, name, error)
        return None
    signature = inspect.signature(member)
    arguments = []
    rest = None
    for parameter in list(signature.parameters.values())[1:]:
        if parameter.kind is parameter.VAR_KEYWORD:
            continue
        kind, unit = _kind_of(hints.get(parameter.name, float))
        if parameter.kind is parameter.VAR_POSITIONAL:  # published if annotated scalar
            if parameter.name in hints and kind in (Kind.BOOL, Kind.INT, Kind.FLOAT, Kind.STR):
                rest = Argument(parameter.name, kind)
            continue
        if kind in (Kind.JSON, Kind.VOID) or (kind is Kind.QUANTITY and unit is None):
            if parameter.default is not parameter.empty:
                continue  # optional and not expressible in Tango: callers get the default
            LOG.info("%s.%s not published: argument %r has no Tango type",
                     cls.__name__, name, parameter.name)
            return None
        arguments.append(Argument(parameter.name, kind, unit, parameter.default))
    if (len(arguments) > 1 or rest is not None) and not all(
        argument.kind in (Kind.BOOL, Kind.INT, Kind.FLOAT, Kind.QUANTITY, Kind.STR)
        for argument in arguments
    ):
        LOG.info("%s.%s not published: several array arguments", cls.__name__, name)
        return None
    result_hint = hints.get("return", type(None))
    result, result_unit = _kind_of(result_hint)
    if result is Kind.JSON and (get_origin(result_hint) or result_hint) is not dict:
        # e.g. grab() -> ImageWithMetadata: frames travel over ZMQ, never as a command result
        LOG.info("%s.%s not published: its result has no Tango type", cls.__name__, name)
        return None
    doc = inspect.getdoc(member) or ""
    return CommandSpec(
        method=name,
        name=camel_case(name),
        arguments=tuple(arguments),
        result=result,
        result_unit=result_unit,
        background=bool(getattr(member, "__concert_background__", False)),
        doc=doc.splitlines()[0] if doc else "",
        rest=rest,
    )


__all__ = [
    "OBJECT_COMMANDS",
    "Argument",
    "CommandSpec",
    "Kind",
    "ParameterSpec",
    "commands_of",
    "parameters_of",
]
