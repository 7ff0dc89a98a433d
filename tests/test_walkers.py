"""Walkers and writers on real files."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os

import h5py
import numpy as np
import pytest
import tifffile

from concert_core.dataplane import ImageReceiver, ImageSender
from concert_core.helpers import ImageWithMetadata
from walkers import (
    DatasetExistsError,
    DirectoryWalker,
    DummyWalker,
    HDF5Walker,
    PathError,
    StorageError,
    TiffWriter,
    create_directory,
    read_hdf5,
    read_image,
    read_tiff,
    split_dsetformat,
    write_images,
    write_tiff,
)
from walkers.hdf5 import METADATA_BLOCK, METADATA_SUFFIX


def frames(count: int = 5, shape=(16, 24)) -> list[ImageWithMetadata]:
    rng = np.random.default_rng(count)
    return [
        ImageWithMetadata(rng.integers(0, 4096, shape, dtype=np.uint16), {"n": i, "flat": True})
        for i in range(count)
    ]


async def produce(items):
    for item in items:
        await asyncio.sleep(0)
        yield item


def leftovers(path) -> list[str]:
    return [name for _, _, files in os.walk(path) for name in files if name.endswith(".part")]


async def test_tiff_one_file_per_frame(tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path / "data"), start_index=100)
    data = frames()
    assert await walker.write(produce(data)) == 5
    names = sorted(os.listdir(walker.current))
    assert names == [f"frame_{i:06}.tif" for i in range(100, 105)]
    for name, frame in zip(names, data, strict=True):
        image = read_image(os.path.join(walker.current, name))
        np.testing.assert_array_equal(image, frame)
        assert image.metadata == {"n": frame.metadata["n"], "flat": True}
    assert walker.frames_written == 5 and walker.bytes_written == sum(f.nbytes for f in data)
    assert oct(os.stat(walker.root).st_mode & 0o777) == "0o750"
    assert not leftovers(tmp_path)


async def test_tiff_multi_page_by_bytes_per_file(tmp_path):
    data = frames(7)
    walker = await DirectoryWalker(root=str(tmp_path), bytes_per_file=3 * data[0].nbytes)
    await walker.descend("scan")
    assert await walker.write(produce(data), dsetname="proj_{:>04}.tif") == 7
    names = sorted(os.listdir(walker.current))
    assert names == ["proj_0000.tif", "proj_0001.tif", "proj_0002.tif"]
    stack = read_tiff(os.path.join(walker.current, names[0]))
    np.testing.assert_array_equal(stack, np.stack(data[:3]))
    assert [page["n"] for page in stack.metadata["pages"]] == [0, 1, 2]
    np.testing.assert_array_equal(read_tiff(os.path.join(walker.current, names[2])), data[6])


async def test_unformattable_prefix_appends_to_one_file(tmp_path):
    target = str(tmp_path / "stack.tif")
    assert await write_images(produce(frames(4)), prefix=target) == 4
    assert read_tiff(target).shape == (4, 16, 24)


async def test_bigtiff_when_a_file_would_exceed_the_threshold(tmp_path):
    data = frames(4)
    small = functools.partial(TiffWriter, bigtiff_threshold=2 * data[0].nbytes)
    prefix = str(tmp_path / "a_{:>03}.tif")
    await write_images(
        produce(data), writer=small, prefix=prefix, bytes_per_file=2 * data[0].nbytes
    )
    await write_images(
        produce(data),
        writer=small,
        prefix=str(tmp_path / "b_{:>03}.tif"),
        bytes_per_file=3 * data[0].nbytes,
    )
    with tifffile.TiffFile(tmp_path / "a_000.tif") as tiff:
        assert not tiff.is_bigtiff and len(tiff.pages) == 2
    with tifffile.TiffFile(tmp_path / "b_000.tif") as tiff:
        assert tiff.is_bigtiff and len(tiff.pages) == 3
    np.testing.assert_array_equal(read_tiff(str(tmp_path / "b_000.tif")), np.stack(data[:3]))


async def test_existing_dataset_is_refused(tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path))
    await walker.write(produce(frames(2)))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(DatasetExistsError, match="exists already"):
        await walker.create_writer(produce(frames(2)))
    assert sorted(os.listdir(tmp_path)) == before
    assert await walker.write(produce(frames(1)), dsetname="other_{:>06}.tif") == 1


async def test_descend_ascend_home_exists(tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path), rights="700")
    await walker.descend("a")
    await walker.descend("b/c")
    assert walker.current == str(tmp_path / "a" / "b" / "c")
    assert oct(os.stat(tmp_path / "a" / "b").st_mode & 0o777) == "0o700"
    await walker.ascend()
    assert await walker.exists("c")
    assert not await walker.exists("nope")
    await walker.home()
    assert walker.current == str(tmp_path)
    await walker.ascend()  # never above the root
    assert walker.current == str(tmp_path)
    assert await walker.exists("a", "b", "c")


@pytest.mark.parametrize("name", ["..", "a/../..", "/etc", "", "x\0y", "out"])
async def test_paths_leaving_the_root_are_refused(tmp_path, name):
    root = tmp_path / "root"
    walker = await DirectoryWalker(root=str(root))
    os.symlink(tmp_path, root / "out")
    with pytest.raises(PathError):
        await walker.descend(name)
    assert walker.current == str(root)
    assert sorted(os.listdir(root)) == ["out"]


async def test_create_writer_in_subdirectory_leaves_walker_where_it_was(tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path))
    async with walker:
        writer = await walker.create_writer(produce(frames(3)), name="darks")
    assert walker.current == str(tmp_path)
    await walker.descend("flats")
    assert await writer == 3
    assert len(os.listdir(tmp_path / "darks")) == 3


async def test_permission_error_reaches_the_caller(tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path))
    await walker.descend("locked")
    os.chmod(walker.current, 0o500)
    try:
        if os.access(walker.current, os.W_OK):
            pytest.skip("running with rights that ignore directory permissions (root)")
        with pytest.raises(PermissionError):
            await walker.write(produce(frames(2)))
    finally:
        os.chmod(walker.current, 0o700)
    assert not leftovers(tmp_path)


async def test_failed_write_leaves_no_partial_file(tmp_path):
    async def failing():
        for i, frame in enumerate(frames(6)):
            if i == 4:
                raise RuntimeError("camera died")
            yield frame

    data = frames(6)
    prefix = str(tmp_path / "f_{:>03}.tif")
    with pytest.raises(RuntimeError, match="camera died"):
        await write_images(failing(), prefix=prefix, bytes_per_file=3 * data[0].nbytes)
    assert os.listdir(tmp_path) == ["f_000.tif"]  # the complete first file only
    bad = [data[0], np.zeros((2, 2), dtype=object)]  # fails inside an open multi-page file
    with pytest.raises(TypeError, match="dtype object"):
        await write_images(produce(bad), prefix=str(tmp_path / "o.tif"))
    assert not leftovers(tmp_path) and "o.tif" not in os.listdir(tmp_path)


async def test_os_error_in_writer_thread_reaches_the_caller(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    walker = await DirectoryWalker(root=str(tmp_path))
    walker._current = str(blocker)  # the walker's directory turned into a file
    with pytest.raises((NotADirectoryError, FileExistsError)):
        await walker.write(produce(frames(2)))


async def test_cancelled_writer_removes_its_temporary_file(tmp_path):
    gate = asyncio.Event()

    async def stalled():
        yield frames(1)[0]
        await gate.wait()

    task = asyncio.create_task(write_images(stalled(), prefix=str(tmp_path / "s.tif")))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("compression", [None, "gzip", "lz4", "bitshuffle"])
async def test_hdf5_sequence_with_metadata(tmp_path, compression):
    filename = str(tmp_path / "scan.h5")
    walker = await HDF5Walker(filename, compression=compression)
    try:
        await walker.descend("tomo")
        data = frames(20)
        assert await walker.write(produce(data), dsetname="projections") == 20
        assert await walker.exists("projections")
        await walker.log_to_json({"energy": 20})
        with pytest.raises(DatasetExistsError):
            await walker.create_writer(produce(data), dsetname="projections")
    finally:
        await walker.close()
    stack, metadata = read_hdf5(filename, "/tomo/projections")
    np.testing.assert_array_equal(stack, np.stack(data))
    assert [entry["n"] for entry in metadata] == list(range(20))
    with h5py.File(filename, "r") as file:
        dataset = file["/tomo/projections"]
        assert dataset.chunks == (1, 16, 24) and dataset.maxshape == (None, 16, 24)
        assert bool(dataset.attrs["flat"]) is True  # constant: an attribute
        assert "n" not in dataset.attrs  # differs per frame
        assert json.loads(file["/tomo"].attrs["experiment.json"]) == {"energy": 20}
        filters = dataset.id.get_create_plist().get_nfilters()
        assert filters == (0 if compression is None else 1)
        assert not [name for name in file["/tomo"] if name.endswith(".part")]


async def test_hdf5_failure_deletes_the_partial_dataset(tmp_path):
    filename = str(tmp_path / "scan.h5")
    walker = await HDF5Walker(filename)
    mixed = [*frames(3), np.zeros((2, 2), np.uint16)]
    with pytest.raises(StorageError, match="holds"):
        await walker.write(produce(mixed))
    await walker.close()
    with h5py.File(filename, "r") as file:
        assert list(file) == []


async def test_hdf5_metadata_blocks_and_counters(tmp_path):
    """More frames than one metadata block (and than the queue): every frame's metadata,
    in order, and every frame counted once."""
    filename = str(tmp_path / "long.h5")
    count = 2 * METADATA_BLOCK + 7
    data = frames(count, shape=(2, 3))
    walker = await HDF5Walker(filename)
    try:
        assert await walker.write(produce(data), dsetname="long") == count
    finally:
        await walker.close()
    assert walker.frames_written == count
    assert walker.bytes_written == count * data[0].nbytes
    stack, metadata = read_hdf5(filename, "/long")
    np.testing.assert_array_equal(stack, np.stack(data))
    assert [entry["n"] for entry in metadata] == list(range(count))
    with h5py.File(filename, "r") as file:
        assert file["/long" + METADATA_SUFFIX].shape == (count,)


async def test_hdf5_failure_after_metadata_blocks_deletes_everything(tmp_path):
    filename = str(tmp_path / "scan.h5")
    walker = await HDF5Walker(filename)
    mixed = [*frames(METADATA_BLOCK + 10, shape=(2, 3)), np.zeros((3, 3), np.uint16)]
    with pytest.raises(StorageError, match="holds"):
        await walker.write(produce(mixed))
    await walker.close()
    with h5py.File(filename, "r") as file:
        assert list(file) == []


@pytest.mark.parametrize("outcome", ["written", "failed", "empty"])
async def test_hdf5_file_closed_by_the_writer_after_its_sequence(tmp_path, outcome):
    """``close_after_sequence``: the writer thread closes the file when the sequence
    ends, whatever the outcome; what was written is complete, a failure leaves nothing."""
    filename = str(tmp_path / "one.h5")
    walker = await HDF5Walker(filename, close_after_sequence=True)
    data = {"written": frames(5), "empty": [],
            "failed": [*frames(3), np.zeros((2, 2), np.uint16)]}[outcome]
    if outcome == "failed":
        with pytest.raises(StorageError, match="holds"):
            await walker.write(produce(data), dsetname="seq")
    else:
        assert await walker.write(produce(data), dsetname="seq") == len(data)
    assert not walker.file.id.valid  # closed before the write returned
    await walker.close()  # nothing left to do
    with h5py.File(filename, "r") as file:
        if outcome == "written":
            np.testing.assert_array_equal(file["seq"][()], np.stack(data))
            assert file["seq" + METADATA_SUFFIX].shape == (5,)
        else:
            assert list(file) == []


async def test_write_stream_from_a_receiver(tmp_path):
    data = frames(50)
    async with (
        ImageSender("tcp://127.0.0.1:0") as sender,
        ImageReceiver(sender.endpoint) as receiver,
    ):
        walker = await DirectoryWalker(root=str(tmp_path), dsetname="s_{:>04}.tif")
        writing = asyncio.create_task(walker.write_stream(receiver, name="stream"))
        for frame in data:
            await sender.send(frame)
        await sender.end()
        assert await writing == 50
    assert walker.frames_written == 50
    image = read_tiff(str(tmp_path / "stream" / "s_0049.tif"))
    np.testing.assert_array_equal(image, data[49])
    assert image.metadata == {"n": 49, "flat": True, "index": 49}


async def test_log_to_json_and_register_logger(tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path))
    await walker.log_to_json('{"a": 1}')
    assert json.loads((tmp_path / "experiment.json").read_text()) == {"a": 1}
    closer = await walker.register_logger("walker-test", logging.INFO, "exp.log")
    logging.getLogger("walker-test").info("hello walker")
    await closer()
    logging.getLogger("walker-test").info("not logged")
    text = (tmp_path / "exp.log").read_text()
    assert "hello walker" in text and "not logged" not in text


async def test_dummy_walker():
    walker = await DummyWalker(root="/sim")
    await walker.descend("a")
    assert await walker.write(produce(frames(3))) == 3
    await walker.ascend()
    assert await walker.exists("a", "frames")
    assert walker.sequences == {"/sim/a/frames": 3}
    with pytest.raises(DatasetExistsError):
        await walker.create_writer([], name="a")
    await (await walker.register_logger("x", logging.INFO, "x.log"))()


def test_storage_helpers(tmp_path):
    assert split_dsetformat("frame_{:>06}.tif") == "frame"
    assert split_dsetformat("frames") == "frames"
    create_directory(str(tmp_path / "x" / "y"), "711")
    assert oct(os.stat(tmp_path / "x").st_mode & 0o777) == "0o711"
    image = ImageWithMetadata(np.eye(3, dtype=np.float32), {"k": [1, 2]})
    write_tiff(str(tmp_path / "eye.tif"), image)
    back = read_image(str(tmp_path / "eye.tif"))
    np.testing.assert_array_equal(back, image)
    assert back.metadata == {"k": [1, 2]}
    with pytest.raises(DatasetExistsError):
        write_tiff(str(tmp_path / "eye.tif"), image)
