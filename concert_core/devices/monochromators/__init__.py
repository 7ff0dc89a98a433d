"""Monochromators."""

from concert_core.devices.monochromators.base import (
    DoubleMonochromator,
    Monochromator,
    energy_to_wavelength,
    wavelength_to_energy,
)

__all__ = ["DoubleMonochromator", "Monochromator", "energy_to_wavelength",
           "wavelength_to_energy"]
