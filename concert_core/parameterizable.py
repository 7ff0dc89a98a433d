"""Collections of parameters: :class:`Parameterizable`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from concert_core.asyncobject import AsyncObject
from concert_core.errors import ParameterError
from concert_core.parameter import Parameter, ParameterValue


def _accessor(kind: str, name: str) -> Any:
    if kind == "get":

        async def get(self: Parameterizable, wait_on: Any = None) -> Any:
            return await self[name].get(wait_on)

        get.__doc__ = f"Read {name!r}."
        return get
    if kind == "set":

        async def set_(self: Parameterizable, value: Any, wait_on: Any = None) -> None:
            await self[name].set(value, wait_on)

        set_.__doc__ = f"Write {name!r}."
        return set_

    async def get_target(self: Parameterizable, wait_on: Any = None) -> Any:
        return await self[name].get_target(wait_on)

    get_target.__doc__ = f"Read the target of {name!r}."
    return get_target


class Parameterizable(AsyncObject):
    """An object made of :class:`Parameter` declarations.

    ``obj['name']`` is the :class:`ParameterValue`; iterating yields them in name order;
    ``obj.name`` reads and writes blocking (outside an event loop); every parameter gets
    the coroutine methods ``get_<name>``, ``set_<name>`` and ``get_target_<name>``.
    """

    _class_parameters: dict[str, Parameter] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Parameter] = {}
        for klass in reversed(cls.__mro__):
            for name, attribute in vars(klass).items():
                if isinstance(attribute, Parameter):
                    found[name] = attribute
                elif name in found and attribute is not None:
                    del found[name]  # a subclass replaced the parameter by something else
        cls._class_parameters = found
        for name in found:
            for kind, method in (("get", f"get_{name}"), ("set", f"set_{name}"),
                                 ("get_target", f"get_target_{name}")):
                if not hasattr(cls, method):
                    setattr(cls, method, _accessor(kind, name))

    # -- access ------------------------------------------------------------------------
    def _concert_values(self) -> dict[str, ParameterValue]:
        try:
            return self.__dict__["_parameter_values"]
        except KeyError:
            values = self.__dict__["_parameter_values"] = {}
            return values

    def _concert_parameters(self) -> dict[str, Parameter]:
        extra = self.__dict__.get("_instance_parameters")
        if extra:
            return {**type(self)._class_parameters, **extra}
        return type(self)._class_parameters

    def __getitem__(self, name: str) -> ParameterValue:
        values = self._concert_values()
        try:
            return values[name]
        except KeyError:
            pass
        parameter = self._concert_parameters().get(name)
        if parameter is None:
            raise ParameterError(name, self)
        value = values[name] = parameter.make_value(self)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._concert_parameters()

    def __iter__(self) -> Iterator[ParameterValue]:
        for name in sorted(self._concert_parameters()):
            yield self[name]

    def install_parameters(self, parameters: dict[str, Parameter]) -> None:
        """Add ``parameters`` to this instance only; its class stays the same."""
        extra = self.__dict__.setdefault("_instance_parameters", {})
        for name, parameter in parameters.items():
            if name in self._concert_parameters():
                raise ValueError(f"{type(self).__name__} already has a parameter {name!r}")
            parameter.__set_name__(type(self), name)
            extra[name] = parameter
            for kind, method in (("get", f"get_{name}"), ("set", f"set_{name}"),
                                 ("get_target", f"get_target_{name}")):
                if not hasattr(self, method):
                    self.__dict__[method] = functools.partial(_accessor(kind, name), self)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: parameters installed on the instance.
        extra = self.__dict__.get("_instance_parameters")
        if extra and name in extra:
            return extra[name].__get__(self, type(self))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        extra = self.__dict__.get("_instance_parameters")
        if extra and name in extra:
            extra[name].__set__(self, value)
        else:
            object.__setattr__(self, name, value)

    # -- whole-object operations -------------------------------------------------------
    async def read_values(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """Read the parameters ``names`` (default: every readable one) and return their
        values by name; a parameter that cannot be read maps to its exception. A remote
        device overrides this to read them all in one round trip."""
        values: dict[str, Any] = {}
        for name in sorted(self._readable_names() if names is None else names):
            try:
                values[name] = await self[name].get()
            except Exception as error:
                values[name] = error
        return values

    async def write_values(self, values: Mapping[str, Any]) -> None:
        """Write several parameters, in the order given. Every value is validated first
        (locks, units, limits, state), so that such a refusal writes none of them; a
        failure of the device itself leaves the values before it written. A remote device
        overrides this to write them all in one round trip."""
        for name, value in values.items():
            await self[name].validate(value)
        for name, value in values.items():
            await self[name].set(value)

    def _readable_names(self) -> list[str]:
        return [value.name for value in self if value.readable]

    async def stash(self) -> None:
        """Stash every writable parameter (see :meth:`ParameterValue.stash`)."""
        for value in self:
            await value.stash()

    async def restore(self) -> None:
        """Restore every parameter saved by :meth:`stash`."""
        for value in reversed(list(self)):
            await value.restore()

    def lock(self, permanent: bool = False) -> None:
        """Lock every parameter for writing."""
        for value in self:
            value.lock(permanent)

    def unlock(self) -> None:
        """Unlock every parameter (``LockError`` if one is locked permanently)."""
        for value in self:
            value.unlock()

    @property
    def logger(self) -> logging.Logger:
        """The object's logger, named after its class."""
        cls = type(self)
        return logging.getLogger(f"{cls.__module__}.{cls.__qualname__}")


__all__ = ["Parameterizable"]
