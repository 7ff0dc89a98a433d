"""Acquisitions, experiments, addons, control loops and directors; ``experiments.demo`` is
the main job of ``make demo``.

Source-independent imaging experiments are in :mod:`experiments.imaging`, their synchrotron
(shutter) variants in :mod:`experiments.synchrotron` and X-ray-tube variants in
:mod:`experiments.xraytube`.
"""

from experiments.addons import (
    Accumulator,
    Addon,
    AddonError,
    Consumer,
    ImageWriter,
    OnlineReconstruction,
    OnlineReconstructionError,
    PhaseGratingSteppingFourierProcessing,
    ReconstructionArgs,
    RemoteImageWriter,
)
from experiments.base import Acquisition, Experiment, FrameToken
from experiments.control import ClosedLoop, DummyLoop
from experiments.directors import Director, XYScan
from experiments.imaging import (
    ContinuousSpiralTomography,
    ContinuousTomography,
    GratingInterferometryStepping,
    ImagingExperiment,
    Radiography,
    SteppedSpiralTomography,
    SteppedTomography,
    Tomography,
    frames,
    tomo_angular_step,
    tomo_max_speed,
    tomo_projections_number,
)

__all__ = [
    "Accumulator",
    "Acquisition",
    "Addon",
    "AddonError",
    "ClosedLoop",
    "Consumer",
    "ContinuousSpiralTomography",
    "ContinuousTomography",
    "Director",
    "DummyLoop",
    "Experiment",
    "FrameToken",
    "GratingInterferometryStepping",
    "ImageWriter",
    "ImagingExperiment",
    "OnlineReconstruction",
    "OnlineReconstructionError",
    "PhaseGratingSteppingFourierProcessing",
    "Radiography",
    "ReconstructionArgs",
    "RemoteImageWriter",
    "SteppedSpiralTomography",
    "SteppedTomography",
    "Tomography",
    "XYScan",
    "frames",
    "tomo_angular_step",
    "tomo_max_speed",
    "tomo_projections_number",
]
