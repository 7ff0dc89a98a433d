"""Closed feedback loops."""

from __future__ import annotations

import pytest

from experiments import ClosedLoop, DummyLoop


async def test_dummy_loop_converges():
    loop = DummyLoop(start=1.0, target=0.0, tolerance=0.1)
    assert await loop.run(max_iterations=10)
    assert loop.iterations == 5  # 1, 0.5, 0.25, 0.125, 0.0625
    assert not await loop.run(max_iterations=3)
    with pytest.raises(ValueError):
        await loop.run(max_iterations=0)


async def test_closed_loop_order():
    calls = []

    class Loop(ClosedLoop):
        async def initialize(self):
            calls.append("initialize")

        async def measure(self):
            calls.append("measure")

        async def compare(self):
            calls.append("compare")
            return calls.count("measure") == 2

        async def control(self):
            calls.append("control")

    assert await Loop().run()
    assert calls == ["initialize", "measure", "compare", "control", "measure", "compare"]
    with pytest.raises(NotImplementedError):
        await ClosedLoop().run()
