"""The default simulated beamline of the suite, as a dsconfig JSON file (no Tango import)."""

from __future__ import annotations

from pathlib import Path

#: The default beamline file: load it with ``json2tango -w`` or ``concert tango up``.
BEAMLINE: Path = Path(__file__).with_name("beamline.json")

__all__ = ["BEAMLINE"]
