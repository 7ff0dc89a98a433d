"""The state machine: :class:`State`, :class:`check` and :func:`transition`.

A device declares ``state = State(...)``. Its value comes from the hardware through
``_get_<name>`` (or ``fget``) where the device has one, otherwise it is kept in software
starting at ``default`` and moved by methods decorated with :func:`transition`.
:class:`check` guards methods and setters: the state must be in ``source`` before and in
``target`` after. Several state machines can live on one object (``state_name``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from concert_core.errors import FSMError, StateError, TransitionNotAllowed, WriteAccessError
from concert_core.parameter import Parameter, ParameterValue

ANY = "*"


def _state_set(states: str | Iterable[str]) -> frozenset[str]:
    return frozenset([states] if isinstance(states, str) else states)


class State(Parameter):
    """A read-only parameter holding the state of a finite state machine."""

    def __init__(
        self,
        default: str | None = None,
        fget: Callable | None = None,
        fset: Callable | None = None,
        data: Any = None,
        check: Callable | None = None,
        help: str | None = None,
    ) -> None:
        super().__init__(fget=fget, fset=fset, data=data, check=check, help=help)
        self.default = default

    def __set__(self, instance: Any, value: Any) -> None:
        raise WriteAccessError(self.name)

    def make_value(self, instance: Any) -> StateValue:
        return StateValue(instance, self)


class StateValue(ParameterValue):
    """The state of one instance, with the message of the last error (for Tango Status)."""

    _parameter: State

    def __init__(self, instance: Any, state: State) -> None:
        super().__init__(instance, state)
        self.hardware = self._fget is not None
        self._value = state.default
        self.message = ""
        if not self.hardware:
            if state.default is None:
                raise FSMError(
                    f"{type(instance).__name__}.{state.name} has neither a hardware getter "
                    f"(_get_{state.name}) nor a default"
                )
            self.last_value = state.default
        self._fset = None  # a state is changed by transitions, never written

    @property
    def readable(self) -> bool:
        return True

    async def get(self, wait_on: Any = None) -> str:
        if wait_on is not None:
            await wait_on
        if self.hardware:
            return await super().get()
        return self._value

    def set_software(self, value: str, message: str = "") -> None:
        """Move a software state machine to ``value`` and notify observers."""
        if self.hardware:
            raise FSMError(
                f"{type(self._instance).__name__}.{self.name} is read from the hardware; "
                "it cannot be moved by a transition"
            )
        changed = value != self._value or message != self.message
        self._value = value
        self.message = message
        if changed:
            self.notify(value)

    def describe(self) -> str:
        """The state name followed by the message, if any (Tango Status)."""
        value = self.last_value if self.last_value is not None else self._value
        return f"{value}: {self.message}" if self.message else str(value)


class check:  # noqa: N801 - Concert's public name
    """Decorate a coroutine function or async generator to enforce state transitions.

    The state named ``state_name`` must be in ``source`` when the method is called
    (``TransitionNotAllowed`` otherwise) and in ``target`` when it returns normally.
    Both accept a state, a list of states or ``'*'``.
    """

    def __init__(
        self,
        source: str | Iterable[str] = ANY,
        target: str | Iterable[str] = ANY,
        state_name: str = "state",
    ) -> None:
        self.sources = _state_set(source)
        self.targets = _state_set(target)
        self.state_name = state_name

    async def verify_source(self, instance: Any, action: str) -> None:
        """Raise ``TransitionNotAllowed`` unless the current state allows ``action``."""
        if ANY in self.sources:
            return
        current = await instance[self.state_name].get()
        if current not in self.sources:
            raise TransitionNotAllowed(
                f"{action} is not allowed in {self.state_name} {current!r} "
                f"(allowed in: {', '.join(sorted(self.sources))})"
            )

    async def verify_target(self, instance: Any, action: str) -> None:
        if ANY in self.targets:
            return
        current = await instance[self.state_name].get()
        if current not in self.targets:
            raise TransitionNotAllowed(
                f"{action} ended in {self.state_name} {current!r} "
                f"(expected: {', '.join(sorted(self.targets))})"
            )

    def __call__(self, func: Callable) -> Callable:
        action = func.__name__
        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            async def generator(instance: Any, *args: Any, **kwargs: Any) -> Any:
                await self.verify_source(instance, action)
                async with contextlib.aclosing(func(instance, *args, **kwargs)) as items:
                    async for item in items:
                        yield item
                await self.verify_target(instance, action)

            wrapper = generator
        elif inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def coroutine(instance: Any, *args: Any, **kwargs: Any) -> Any:
                await self.verify_source(instance, action)
                result = await func(instance, *args, **kwargs)
                await self.verify_target(instance, action)
                return result

            wrapper = coroutine
        else:
            raise TypeError(f"check decorates coroutine functions and async generators, "
                            f"not {func!r}")
        wrapper.__concert_check__ = self
        return wrapper


def transition(
    immediate: str | None = None, target: str | None = None, state_name: str = "state"
) -> Callable[[Callable], Callable]:
    """Move a software state machine around a coroutine function or async generator.

    The state becomes ``immediate`` when the call starts and ``target`` when it ends,
    also when it is cancelled (cleanup belongs in the decorated function). A
    :class:`~concert_core.errors.StateError` moves the state to its ``error_state``; any
    other exception to ``'error'`` if an ``immediate`` state had been entered (the state
    never stays in a transient state). The error message is kept for Tango's Status.
    """

    def enter(instance: Any) -> StateValue:
        state = instance[state_name]
        if immediate is not None:
            state.set_software(immediate)
        return state

    def fail(state: StateValue, error: BaseException) -> None:
        if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            if target is not None:
                state.set_software(target)
        elif isinstance(error, StateError):
            state.set_software(error.error_state, str(error))
        elif immediate is not None:
            state.set_software("error", f"{type(error).__name__}: {error}")

    def decorate(func: Callable) -> Callable:
        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            async def generator(instance: Any, *args: Any, **kwargs: Any) -> Any:
                state = enter(instance)
                try:
                    async with contextlib.aclosing(func(instance, *args, **kwargs)) as items:
                        async for item in items:
                            yield item
                except BaseException as error:
                    fail(state, error)
                    raise
                if target is not None:
                    state.set_software(target)

            return generator
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def coroutine(instance: Any, *args: Any, **kwargs: Any) -> Any:
                state = enter(instance)
                try:
                    result = await func(instance, *args, **kwargs)
                except BaseException as error:
                    fail(state, error)
                    raise
                if target is not None:
                    state.set_software(target)
                return result

            return coroutine
        raise TypeError(f"transition decorates coroutine functions and async generators, "
                        f"not {func!r}")

    return decorate


__all__ = ["State", "StateValue", "check", "transition"]
