"""Helpers of ``benchmarks/bench_experiment.py``."""

from pathlib import Path

from benchmarks.bench_experiment import empty_directory


def test_emptying_a_directory_removes_what_it_holds_and_keeps_it(tmp_path: Path):
    root = tmp_path / "root"
    (root / "scan_0001" / "darks").mkdir(parents=True)
    (root / "scan_0001" / "darks" / "frame_000000.tif").write_bytes(b"x")
    (root / "experiment.log").write_text("log")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept.txt").write_text("kept")
    (root / "link").symlink_to(outside, target_is_directory=True)

    empty_directory(root)

    assert root.is_dir() and list(root.iterdir()) == []
    # A link is removed, never followed.
    assert (outside / "kept.txt").read_text() == "kept"


def test_emptying_a_missing_directory_does_nothing(tmp_path: Path):
    empty_directory(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
