"""Turn the ``concert_class`` and ``concert_args`` device properties into a concert device.

Everything here works offline (no Tango), so a beamline file can be checked before any
server starts: :func:`check_device_config` raises ``ConfigurationError`` naming the device,
the property and the problem.
"""

from __future__ import annotations

import importlib
import inspect
import json
import typing
from typing import Any, get_args, get_origin

import pint

from concert_core.quantities import parse_quantity


class ConfigurationError(ValueError):
    """A device property cannot be turned into a concert device."""


def load_class(path: str) -> type:
    """Import ``"package.module:Class"``."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise ConfigurationError(f"concert_class {path!r} is not of the form 'module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigurationError(f"concert_class {path!r}: cannot import {module_name!r}: "
                                 f"{error}") from error
    target: Any = module
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"concert_class {path!r}: {module_name!r} has no {qualname!r}") from None
    if not inspect.isclass(target):
        raise ConfigurationError(f"concert_class {path!r} is not a class")
    return target


def _wants_quantity(hint: Any) -> bool:
    if hint is pint.Quantity:
        return True
    if get_origin(hint) is typing.Annotated:
        return _wants_quantity(get_args(hint)[0])
    return any(_wants_quantity(arg) for arg in get_args(hint))


def _convert(name: str, value: Any, hint: Any) -> Any:
    if value is None or not _wants_quantity(hint):
        return value
    if isinstance(value, list):
        return [_convert(name, item, hint) for item in value]
    if not isinstance(value, (str, int, float)):
        raise ConfigurationError(f"concert_args {name!r}: {value!r} is not a quantity")
    try:
        return parse_quantity(value)
    except (pint.PintError, ValueError, TypeError, AttributeError) as error:
        raise ConfigurationError(
            f"concert_args {name!r}: {value!r} is not a quantity pint can parse ({error})"
        ) from None


def parse_args(cls: type, text: str | dict | None) -> dict[str, Any]:
    """Parse the JSON ``concert_args`` for ``cls``'s ``__ainit__`` (quantities from strings)."""
    if text is None or text == "":
        raw: Any = {}
    elif isinstance(text, dict):
        raw = text
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigurationError(f"concert_args is not valid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"concert_args must be a JSON object, not {type(raw).__name__}")
    constructor = cls.__ainit__
    try:
        hints = typing.get_type_hints(constructor, include_extras=True)
    except Exception:
        hints = {}
    signature = inspect.signature(constructor)
    try:
        signature.bind(None, **raw)
    except TypeError as error:
        known = [name for name in signature.parameters if name != "self"]
        raise ConfigurationError(
            f"concert_args do not fit {cls.__name__}: {error} (known: {', '.join(known)})"
        ) from None
    return {name: _convert(name, value, hints.get(name)) for name, value in raw.items()}


def check_device_config(
    device: str, family: type, concert_class: str | None, concert_args: str | None
) -> type:
    """Validate one device's properties offline; return the implementation class."""
    try:
        cls = load_class(concert_class) if concert_class else None
        if cls is None:
            raise ConfigurationError("no concert_class and no default")
        if not issubclass(cls, family):
            raise ConfigurationError(
                f"concert_class {concert_class!r} is not a {family.__name__}")
        parse_args(cls, concert_args)
    except ConfigurationError as error:
        raise ConfigurationError(f"{device}: {error}") from None
    return cls


__all__ = ["ConfigurationError", "check_device_config", "load_class", "parse_args"]
