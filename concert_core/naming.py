"""Method names <-> command names: ``start_recording`` <-> ``StartRecording``."""

from __future__ import annotations

import re


def camel_case(name: str) -> str:
    """``start_recording`` -> ``StartRecording``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def snake_case(name: str) -> str:
    """``StartRecording`` -> ``start_recording``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


__all__ = ["camel_case", "snake_case"]
