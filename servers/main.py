"""Executables: one per server family of the contract (``ConcertMotor instance`` ...)."""

from __future__ import annotations

import logging
import sys

import tango.server

from servers.bridge import tango_class
from servers.families import SERVERS, published
from servers.lifeline import exit_with_parent


def serve(classes: list[type], server: str, args: list[str] | None = None) -> None:
    """Run the Tango device server ``server`` with ``classes`` and Tango's arguments
    (default: the command line's); it ends with the process that started it if that one
    asked for it (:mod:`servers.lifeline`)."""
    exit_with_parent()
    tango.server.run(classes, args=[server, *(sys.argv[1:] if args is None else args)])


def run(server: str, args: list[str] | None = None) -> None:
    """Run the device server ``server`` (e.g. ``ConcertMotor``) with Tango's arguments."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve([tango_class(entry) for entry in published(server)], server, args)


def _entry(server: str):  # one console script per server; Starter starts them by name
    def main() -> None:
        run(server)

    main.__name__ = server
    main.__doc__ = f"Run the {server} device server."
    return main


ConcertMotor = _entry("ConcertMotor")
ConcertCamera = _entry("ConcertCamera")
ConcertShutter = _entry("ConcertShutter")
ConcertStorageRing = _entry("ConcertStorageRing")
ConcertXRayTube = _entry("ConcertXRayTube")
ConcertMonochromator = _entry("ConcertMonochromator")
ConcertPhotoDiode = _entry("ConcertPhotoDiode")
ConcertPositioner = _entry("ConcertPositioner")
ConcertPump = _entry("ConcertPump")
ConcertScales = _entry("ConcertScales")
ConcertSampleChanger = _entry("ConcertSampleChanger")
ConcertGripper = _entry("ConcertGripper")
ConcertIO = _entry("ConcertIO")
ConcertLightSource = _entry("ConcertLightSource")
ConcertAttenuatorBox = _entry("ConcertAttenuatorBox")
ConcertLensChanger = _entry("ConcertLensChanger")
ConcertDetector = _entry("ConcertDetector")
ConcertWalker = _entry("ConcertWalker")
ConcertDirector = _entry("ConcertDirector")

assert set(SERVERS) <= set(globals()), "every server family needs an entry point"

if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])
