"""Walkers: move through a storage hierarchy and write image sequences there.

:class:`DirectoryWalker` writes TIFF files into directories, :class:`HDF5Walker`
chunked datasets into the groups of an HDF5 file, :class:`DummyWalker` only remembers
paths. Every walker can write a whole data-plane stream (:meth:`Walker.write_stream`).
"""

from walkers.base import (
    DatasetExistsError,
    LoggingHandlerCloser,
    PathError,
    StorageError,
    Walker,
    WriterClassChanged,
)
from walkers.directory import DirectoryWalker
from walkers.dummy import DummyWalker
from walkers.hdf5 import HDF5Walker, compression_options, read_hdf5
from walkers.storage import (
    create_directory,
    read_image,
    read_tiff,
    split_dsetformat,
    write_tiff,
)
from walkers.tiff import TiffPages
from walkers.writers import ImageWriter, TiffWriter, write_images

__all__ = [
    "DatasetExistsError",
    "DirectoryWalker",
    "DummyWalker",
    "HDF5Walker",
    "ImageWriter",
    "LoggingHandlerCloser",
    "PathError",
    "StorageError",
    "TiffPages",
    "TiffWriter",
    "Walker",
    "WriterClassChanged",
    "compression_options",
    "create_directory",
    "read_hdf5",
    "read_image",
    "read_tiff",
    "split_dsetformat",
    "write_images",
    "write_tiff",
]
