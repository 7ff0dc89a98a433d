"""Closed feedback loops: measure, compare with a goal, correct, until the goal is met.

::

    initialize -> measure -> compare -> OK -> success
                    ^            |
                    |           NOK
                    +- control <-+
"""

from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)


class ClosedLoop:
    """An abstract feedback loop: subclasses implement :meth:`measure`, :meth:`compare` and
    :meth:`control` (and :meth:`initialize` where the set-up needs a reference state)."""

    #: Number of measurements of the last :meth:`run`.
    iterations: int = 0

    async def initialize(self) -> None:
        """Bring the set-up to a defined initial (reference) state; nothing by default."""

    async def measure(self) -> None:
        """Acquire and analyse data."""
        raise NotImplementedError

    async def compare(self) -> bool:
        """True if the last measurement satisfies the goal."""
        raise NotImplementedError

    async def control(self) -> None:
        """Correct the set-up according to the last measurement."""
        raise NotImplementedError

    async def run(self, max_iterations: int = 10) -> bool:
        """Loop until :meth:`compare` is satisfied (True) or ``max_iterations``
        measurements did not get there (False)."""
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {max_iterations}")
        await self.initialize()
        self.iterations = 0
        for _ in range(max_iterations):
            await self.measure()
            self.iterations += 1
            if await self.compare():
                LOG.debug("%s converged after %d iterations", type(self).__name__,
                          self.iterations)
                return True
            await self.control()
        LOG.info("%s did not converge in %d iterations", type(self).__name__, max_iterations)
        return False


class DummyLoop(ClosedLoop):
    """A loop driving a number towards ``target``: every control step halves the distance;
    it converges when the distance is below ``tolerance``."""

    def __init__(self, start: float = 1.0, target: float = 0.0, tolerance: float = 0.1) -> None:
        self.start = start
        self.target = target
        self.tolerance = tolerance
        self.value = start
        self.measured: float | None = None

    async def initialize(self) -> None:
        self.value = self.start
        self.measured = None

    async def measure(self) -> None:
        self.measured = self.value

    async def compare(self) -> bool:
        return self.measured is not None and abs(self.measured - self.target) < self.tolerance

    async def control(self) -> None:
        self.value = self.target + (self.value - self.target) / 2


__all__ = ["ClosedLoop", "DummyLoop"]
