"""The lean TIFF page writer, read back by tifffile and by libtiff (the C library)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess

import numpy as np
import pytest
import tifffile

from concert_core.helpers import ImageWithMetadata
from walkers import StorageError, TiffPages, TiffWriter, read_tiff, write_images
from walkers.tiff import SOFTWARE, can_write

DTYPES = ["u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8"]
#: TIFF tags libtiff is asked for: width, length, bits per sample, sample format.
_WIDTH, _LENGTH, _BITS, _FORMAT, _DESCRIPTION = 256, 257, 258, 339, 270


def _libtiff() -> ctypes.CDLL:
    name = ctypes.util.find_library("tiff")
    if name is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "libtiff6"],
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       capture_output=True, check=False, timeout=600)
        name = ctypes.util.find_library("tiff")
    if name is None:
        pytest.skip("libtiff is not installed and cannot be (apt-get as root)")
    lib = ctypes.CDLL(name)
    lib.TIFFOpen.restype = ctypes.c_void_p
    lib.TIFFStripSize.restype = ctypes.c_int64
    lib.TIFFReadEncodedStrip.restype = ctypes.c_int64
    lib.TIFFSetErrorHandler.restype = ctypes.c_void_p
    lib.TIFFSetWarningHandler.restype = ctypes.c_void_p
    return lib


_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)


def libtiff_pages(path: str) -> list[tuple[np.ndarray, str]]:
    """Every page of ``path`` as read by libtiff, with its description; fails on any
    error or warning libtiff reports."""
    lib = _libtiff()
    complaints: list[tuple[bytes, bytes]] = []
    handler = _HANDLER(lambda module, text, _args: complaints.append((module, text)))
    old_error = lib.TIFFSetErrorHandler(handler)
    old_warning = lib.TIFFSetWarningHandler(handler)
    pages = []
    try:
        tif = lib.TIFFOpen(path.encode(), b"rc")  # c: strips as written
        assert tif, f"libtiff cannot open {path}: {complaints}"
        tif = ctypes.c_void_p(tif)
        try:
            while True:
                width, length = ctypes.c_uint32(), ctypes.c_uint32()
                bits, sample_format = ctypes.c_uint16(), ctypes.c_uint16()
                description = ctypes.c_char_p()
                lib.TIFFGetField(tif, ctypes.c_uint32(_WIDTH), ctypes.byref(width))
                lib.TIFFGetField(tif, ctypes.c_uint32(_LENGTH), ctypes.byref(length))
                lib.TIFFGetField(tif, ctypes.c_uint32(_BITS), ctypes.byref(bits))
                lib.TIFFGetFieldDefaulted(tif, ctypes.c_uint32(_FORMAT),
                                          ctypes.byref(sample_format))
                lib.TIFFGetField(tif, ctypes.c_uint32(_DESCRIPTION), ctypes.byref(description))
                kind = {1: "u", 2: "i", 3: "f"}[sample_format.value]
                dtype = np.dtype(f"<{kind}{bits.value // 8}")
                data = b""
                for strip in range(lib.TIFFNumberOfStrips(tif)):
                    size = lib.TIFFStripSize(tif)
                    buffer = ctypes.create_string_buffer(size)
                    read = lib.TIFFReadEncodedStrip(tif, strip, buffer, ctypes.c_int64(-1))
                    assert read > 0, complaints
                    data += buffer.raw[:read]
                array = np.frombuffer(data, dtype).reshape(length.value, width.value)
                pages.append((array, (description.value or b"").decode("ascii")))
                if not lib.TIFFReadDirectory(tif):
                    break
        finally:
            lib.TIFFClose(tif)
    finally:
        lib.TIFFSetErrorHandler(ctypes.c_void_p(old_error))
        lib.TIFFSetWarningHandler(ctypes.c_void_p(old_warning))
    assert complaints == []
    return pages


def sample(dtype: str, shape=(37, 53), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype).kind
    if kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("bigtiff", [False, True], ids=["classic", "bigtiff"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pages_read_back_by_tifffile_and_libtiff(tmp_path, dtype, bigtiff):
    path = str(tmp_path / "pages.tif")
    first, second = sample(dtype, seed=1), sample(dtype, (8, 3), seed=2)
    with TiffPages(path, bigtiff) as pages:
        assert pages.append(first, '{"index": 0}') == first.nbytes
        pages.append(second, '{"index": 1}')
    read = libtiff_pages(path)
    assert [description for _, description in read] == ['{"index": 0}', '{"index": 1}']
    np.testing.assert_array_equal(read[0][0], first)
    np.testing.assert_array_equal(read[1][0], second)
    with tifffile.TiffFile(path) as tiff:
        assert tiff.is_bigtiff == bigtiff and len(tiff.pages) == 2
        np.testing.assert_array_equal(tiff.pages[0].asarray(), first)
        assert tiff.pages[0].software == SOFTWARE.decode()


def test_tags_are_those_tifffile_writes(tmp_path):
    frame = sample("u2", (64, 48))
    ours, theirs = str(tmp_path / "ours.tif"), str(tmp_path / "theirs.tif")
    with TiffPages(ours) as pages:
        pages.append(frame, '{"index": 7}')
    tifffile.imwrite(theirs, frame, description='{"index": 7}', metadata=None,
                     photometric="minisblack")

    def tags(path):
        with tifffile.TiffFile(path) as tiff:
            found = {tag.code: tag.value for tag in tiff.pages[0].tags.values()}
        del found[273], found[305]  # where the pixels are, who wrote them
        found.setdefault(339, 1)  # SampleFormat 1 (unsigned) is TIFF's default
        return found

    assert tags(ours) == tags(theirs)
    with tifffile.TiffFile(ours) as tiff:  # the pixels start aligned, after the IFD
        assert tiff.pages[0].dataoffsets[0] % 16 == 0


def test_frames_of_more_dimensions_byte_order_and_strides(tmp_path):
    path = str(tmp_path / "planes.tif")
    stack = sample("f4", (3, 5, 7)).astype(">f4")  # big-endian, three planes
    strided = sample("i2", (10, 12))[::2, ::3]
    with TiffPages(path) as pages:
        pages.append(stack, '{"stack": true}')
        pages.append(strided)
    read = libtiff_pages(path)
    assert [description for _, description in read] == ['{"stack": true}', "", "", ""]
    for plane, (array, _) in zip([*stack, strided], read, strict=True):
        np.testing.assert_array_equal(array, plane)
    many = str(tmp_path / "many.tif")  # more pages than one writev takes buffers
    planes = sample("u1", (700, 3, 2))
    with TiffPages(many, bigtiff=True) as pages:
        pages.append(planes, "{}")
        assert pages.pages == 700
    np.testing.assert_array_equal(np.stack([array for array, _ in libtiff_pages(many)]),
                                  planes)


def test_writes_split_into_pieces_resume_where_they_stopped(tmp_path):
    path = str(tmp_path / "pieces.tif")
    frames = [sample("u2", (40, 30), seed=seed) for seed in range(3)]
    with TiffPages(path) as pages:
        pages.max_write = 777  # every page takes several system calls
        for frame in frames:
            pages.append(frame, "{}")
    for frame, (array, _) in zip(frames, libtiff_pages(path), strict=True):
        np.testing.assert_array_equal(array, frame)


def test_refusals_change_nothing(tmp_path):
    path = str(tmp_path / "refused.tif")
    frame = sample("u2")
    for bad in (np.zeros((4, 4), bool), np.zeros((4, 4), complex), np.arange(5, dtype="u2"),
                np.zeros((0, 4), "u2")):
        assert not can_write(bad)
    with TiffPages(path) as pages:
        pages.append(frame, '{"n": 0}')
        size = os.path.getsize(path)
        with pytest.raises(StorageError, match="cannot be a page"):
            pages.append(np.zeros((4, 4), bool))
        pages._layout.limit = size + 3 * 1000  # classic TIFF's 4 GiB, made small
        with pytest.raises(StorageError, match="beyond"):
            pages.append(frame)
        with pytest.raises(StorageError, match="beyond"):  # its first planes would fit
            pages.append(sample("u1", (5, 20, 30)))
        assert os.path.getsize(path) == size
    with pytest.raises(StorageError, match="closed"):
        pages.append(frame)
    [(array, description)] = libtiff_pages(path)  # still one whole page
    np.testing.assert_array_equal(array, frame)
    assert description == '{"n": 0}'


async def test_writer_uses_tifffile_for_frames_the_lean_writer_cannot_take(tmp_path):
    flags = ImageWithMetadata(np.eye(6, dtype=bool), {"mask": True})
    writer = TiffWriter(str(tmp_path / "mask.tif"))
    writer.write(flags)
    writer.close()
    image = read_tiff(str(tmp_path / "mask.tif"))
    np.testing.assert_array_equal(image, flags)
    assert image.metadata == {"mask": True}


async def test_a_frame_the_lean_writer_cannot_take_fails_its_multi_page_file(tmp_path):
    async def produce():
        yield ImageWithMetadata(sample("u2"), {"n": 0})
        yield np.zeros((37, 53), bool)

    with pytest.raises(StorageError, match="cannot be a page"):
        await write_images(produce(), prefix=str(tmp_path / "stack.tif"))
    assert os.listdir(tmp_path) == []  # the file was aborted, its temporary removed
