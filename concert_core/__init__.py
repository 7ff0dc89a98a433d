"""concert_core: the Tango-free core of the suite (units, parameters, state, devices)."""

from concert_core.quantities import q

__version__ = "0.1.0"

__all__ = ["__version__", "q"]
