"""The server families of the contract: executable name -> the concert classes it serves.

Each entry names a family class (its Tango class is the class name) and the default
implementation used when a device has no ``concert_class`` property.
"""

from __future__ import annotations

from dataclasses import dataclass

from servers.configuration import load_class


@dataclass(frozen=True)
class Published:
    """One Tango class: the concert family class and its default implementation."""

    family: str
    default: str
    name: str = ""  # the Tango class, where it differs from the family class's name

    @property
    def tango_class(self) -> str:
        return self.name or self.family.rpartition(":")[2]

    def family_class(self) -> type:
        return load_class(self.family)


def _pair(package: str, *names: str) -> list[Published]:
    return [Published(f"concert_core.devices.{package}.base:{name}",
                      f"concert_core.devices.{package}.dummy:{name}") for name in names]


SERVERS: dict[str, list[Published]] = {
    "ConcertMotor": _pair("motors", "LinearMotor", "ContinuousLinearMotor", "RotationMotor",
                          "ContinuousRotationMotor"),
    "ConcertCamera": _pair("cameras", "Camera"),
    "ConcertShutter": _pair("shutters", "Shutter"),
    "ConcertStorageRing": _pair("storagerings", "StorageRing"),
    "ConcertXRayTube": _pair("xraytubes", "XRayTube"),
    "ConcertMonochromator": _pair("monochromators", "Monochromator", "DoubleMonochromator"),
    "ConcertPhotoDiode": _pair("photodiodes", "PhotoDiode"),
    "ConcertPositioner": _pair("positioners", "Positioner"),
    "ConcertPump": _pair("pumps", "Pump"),
    "ConcertScales": _pair("scales", "Scales", "TarableScales"),
    "ConcertSampleChanger": _pair("samplechangers", "SampleChanger"),
    "ConcertGripper": _pair("grippers", "Gripper"),
    "ConcertIO": _pair("io", "IO", "Signal"),
    "ConcertLightSource": _pair("lightsources", "LightSource"),
    "ConcertAttenuatorBox": _pair("attenuatorboxes", "AttenuatorBox"),
    "ConcertLensChanger": _pair("lenschangers", "LensChanger"),
    "ConcertDetector": _pair("detectors", "Detector"),
    "ConcertWalker": [Published("walkers.device:WalkerDevice", "walkers.device:WalkerDevice",
                                "DirectoryWalker")],
    "ConcertDirector": [Published("experiments.director_device:ExperimentDirector",
                                  "experiments.director_device:ExperimentDirector")],
}


def published(server: str) -> list[Published]:
    """The Tango classes a server executable serves (``KeyError`` for an unknown server)."""
    return SERVERS[server]


def find_published(tango_class: str) -> Published:
    """The entry whose Tango class is ``tango_class``."""
    for entries in SERVERS.values():
        for entry in entries:
            if entry.tango_class == tango_class:
                return entry
    raise KeyError(f"no server publishes a Tango class {tango_class!r}")


__all__ = ["SERVERS", "Published", "find_published", "published"]
