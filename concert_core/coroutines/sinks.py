"""Sinks: coroutines that consume a producer to its end."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Any

import numpy as np


class Accumulate:
    """Collects the items of a producer: ``await accumulate(producer)``, then ``items``.

    Without ``shape`` the items go to a list. With ``shape`` (the whole stack, first
    dimension = number of items) they are written into a preallocated numpy array of
    ``dtype``; more items than fit raise :class:`ValueError`. With ``reset_on_call``
    every call starts afresh, otherwise calls continue where the previous one stopped.
    """

    def __init__(
        self,
        shape: Sequence[int] | None = None,
        dtype: Any = None,
        reset_on_call: bool = True,
    ) -> None:
        self.shape = None if shape is None else tuple(shape)
        self.dtype = dtype
        self.reset_on_call = reset_on_call
        self.items: list[Any] | np.ndarray
        self.count = 0
        self.reset()

    def reset(self) -> None:
        """Forget the accumulated items."""
        self.count = 0
        if self.shape is None:
            self.items = []
        else:
            self.items = np.zeros(self.shape, dtype=self.dtype)

    async def __call__(self, producer: AsyncIterable[Any]) -> None:
        if self.reset_on_call:
            self.reset()
        async for item in producer:
            if isinstance(self.items, list):
                self.items.append(item)
            else:
                if self.count >= len(self.items):
                    raise ValueError(f"more than {len(self.items)} items for shape {self.shape}")
                self.items[self.count] = item
            self.count += 1


class Result:
    """Keeps the last item of a producer in ``result`` (``None`` before the first)."""

    def __init__(self) -> None:
        self.result: Any = None

    async def __call__(self, producer: AsyncIterable[Any]) -> None:
        async for item in producer:
            self.result = item


async def null(producer: AsyncIterable[Any]) -> None:
    """Consume ``producer`` and drop everything."""
    async for _ in producer:
        pass


__all__ = ["Accumulate", "Result", "null"]
