"""Objects constructed with ``await Cls(...)`` and an ``async def __ainit__``."""

from __future__ import annotations

import inspect
from typing import Any


class AsyncObject:
    """Base of every object whose construction may need to await.

    ``obj = await Cls(*args)`` creates the instance and awaits ``__ainit__(*args)``.
    Arguments are checked against ``__ainit__``'s signature when ``Cls(...)`` is called,
    so a wrong call raises ``TypeError`` at once. Subclasses must not define
    ``__init__``; a plain mixin class that has one is initialised by calling
    ``super().__init__(...)`` from ``__ainit__`` as usual.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            raise TypeError(
                f"{cls.__qualname__} is an AsyncObject: define 'async def __ainit__' "
                "instead of '__init__'"
            )
        cls._ainit_signature = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        signature = cls.__dict__.get("_ainit_signature")
        if signature is None:
            signature = inspect.signature(cls.__ainit__)
            cls._ainit_signature = signature
        try:
            signature.bind(None, *args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{cls.__qualname__}(): {error}") from None
        return cls._construct(args, kwargs)

    @classmethod
    async def _construct(cls, args: tuple, kwargs: dict) -> Any:
        instance = super().__new__(cls)
        await instance.__ainit__(*args, **kwargs)
        return instance

    async def __ainit__(self) -> None:
        """Asynchronous constructor; subclasses call ``await super().__ainit__()``."""


AsyncObject._ainit_signature = None

__all__ = ["AsyncObject"]
