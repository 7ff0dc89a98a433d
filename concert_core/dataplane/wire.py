"""The data plane's wire format (contract §7).

A frame is a two-part ZMQ message: a UTF-8 JSON header
``{"dtype": "<u2", "shape": [h, w], "index": i, "metadata": {...}}`` and the raw
C-order buffer of the array. A frame in shared memory (:mod:`.shared`, peers on one
host) is the header alone with the field
``"shm": {"segment": name, "offset": o, "size": n}`` naming where its buffer lies (a
second, empty part is accepted). The end of a stream is a single-part message with the
header ``{"end": true, "count": n}``. :func:`decode` checks every message and raises a
:class:`FrameError` subclass for anything malformed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from concert_core.errors import ConcertError

#: Headers longer than this are refused without being parsed.
MAX_HEADER_BYTES = 1 << 20
#: Arrays with more dimensions than this are refused.
MAX_NDIM = 32


class DataPlaneError(ConcertError):
    """Base of the data plane's errors."""


class DataPlaneTimeout(DataPlaneError, TimeoutError):
    """A send or a receive did not complete in time (the peer is gone or stuck)."""


class FrameError(DataPlaneError, ValueError):
    """A message that does not follow the wire format."""


class PartsError(FrameError):
    """Wrong number of message parts (a header without buffer, extra parts, ...)."""


class HeaderError(FrameError):
    """The header is not a JSON object with valid ``shape``/``index``/``end`` fields."""


class DTypeError(FrameError):
    """Unknown dtype, or one that cannot travel as raw bytes (objects, structures)."""


class SizeMismatchError(FrameError):
    """The buffer's size differs from ``prod(shape) * itemsize``."""


class OrderError(FrameError):
    """A frame's index is not the one expected next in the stream."""


class MetadataError(FrameError, TypeError):
    """Metadata that is not a JSON object (or cannot be serialised to one)."""


class SharedMemoryError(FrameError):
    """A shared-memory reference that cannot be resolved: a malformed segment name, no
    such segment, an offset or size outside its slots, a slot not in use."""


@dataclass(frozen=True)
class SharedRef:
    """Where a frame's buffer lies in shared memory: ``size`` bytes at ``offset`` of the
    segment ``segment`` (a file name under ``/dev/shm``)."""

    segment: str
    offset: int
    size: int


@dataclass
class Frame:
    """A decoded frame: header fields and the buffer (a ZMQ frame or bytes), or, for a
    frame in shared memory, ``buffer`` ``None`` and ``shm`` where it lies."""

    dtype: np.dtype
    shape: tuple[int, ...]
    index: int
    metadata: dict[str, Any]
    buffer: Any = field(repr=False)
    shm: SharedRef | None = None

    def array(self) -> np.ndarray:
        """A numpy array on the received buffer (no copy); not for shared-memory frames
        (see :class:`.shared.SharedFrames`)."""
        if self.buffer is None:
            raise ValueError("the frame's buffer is in shared memory")
        return np.frombuffer(self.buffer, dtype=self.dtype).reshape(self.shape)


@dataclass
class EndOfStream:
    """The end of a stream and the number of frames the sender sent in it."""

    count: int


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "magnitude") and hasattr(value, "units"):  # pint quantity
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def check_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` as a numpy dtype if it can travel as a plain raw buffer."""
    try:
        result = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError) as error:
        raise DTypeError(f"unknown dtype {dtype!r}: {error}") from None
    if result.hasobject or result.fields is not None or result.subdtype is not None:
        raise DTypeError(f"dtype {dtype!r} cannot travel as a raw buffer")
    if result.itemsize == 0:
        raise DTypeError(f"dtype {dtype!r} has no size")
    return result


def encode_metadata(metadata: Mapping[str, Any] | None) -> str:
    """Serialise metadata to a JSON object (numpy scalars/arrays and quantities are
    converted); raise :class:`MetadataError` if that is impossible."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise MetadataError(f"metadata must be a mapping, not {type(metadata).__name__}")
    try:
        return json.dumps(dict(metadata), default=_json_default)
    except (TypeError, ValueError) as error:
        raise MetadataError(f"metadata is not JSON serialisable: {error}") from None


def encode_header(
    dtype: Any,
    shape: Sequence[int],
    index: int,
    metadata: Mapping[str, Any] | None = None,
    shm: SharedRef | None = None,
) -> bytes:
    """The JSON header of a frame, as UTF-8 bytes (with ``shm``: of a frame in shared
    memory, sent without a buffer part)."""
    return compose_header(check_dtype(dtype), shape, index, encode_metadata(metadata), shm)


def compose_header(
    dtype: np.dtype, shape: Sequence[int], index: int, metadata: str, shm: SharedRef | None = None
) -> bytes:
    """:func:`encode_header` from a checked dtype and already encoded metadata."""
    shape_text = ", ".join(str(int(size)) for size in shape)
    extra = (
        f', "shm": {{"segment": {json.dumps(shm.segment)}, "offset": {int(shm.offset)}, '
        f'"size": {int(shm.size)}}}'
        if shm is not None
        else ""
    )
    return (
        f'{{"dtype": "{dtype.str}", "shape": [{shape_text}], '
        f'"index": {int(index)}, "metadata": {metadata}{extra}}}'
    ).encode()


def encode_end(count: int) -> bytes:
    """The single-part end-of-stream message."""
    return json.dumps({"end": True, "count": int(count)}).encode()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nbytes(part: Any) -> int:
    if isinstance(part, bytes | bytearray):
        return len(part)
    return memoryview(getattr(part, "buffer", part)).nbytes


def _header(part: Any) -> dict[str, Any]:
    raw = part if isinstance(part, bytes | bytearray) else getattr(part, "bytes", part)
    if len(raw) > MAX_HEADER_BYTES:
        raise HeaderError(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise HeaderError(f"header is not UTF-8 JSON: {error}") from None
    if not isinstance(header, dict):
        raise HeaderError(f"header must be a JSON object, got {type(header).__name__}")
    return header


def _shared_ref(value: Any) -> SharedRef:
    if not isinstance(value, dict) or set(value) != {"segment", "offset", "size"}:
        raise HeaderError(f"shm must be an object of segment, offset and size: {value!r}")
    segment, offset, size = value["segment"], value["offset"], value["size"]
    if not isinstance(segment, str) or not _is_int(offset) or not _is_int(size):
        raise HeaderError(f"shm needs a segment name and integer offset and size: {value!r}")
    if offset < 0 or size <= 0:
        raise HeaderError(f"shm offset must be >= 0 and size > 0: {value!r}")
    return SharedRef(segment, offset, size)


def check_order(index: int, expected_index: int | None, allow_gaps: bool = False) -> None:
    """Raise :class:`OrderError` unless frame ``index`` may follow: it must equal
    ``expected_index`` (or, with ``allow_gaps``, be at least it: a lossy stream)."""
    if expected_index is None:
        return
    if allow_gaps and index < expected_index:
        raise OrderError(f"frame {index} arrived after frame {expected_index - 1}")
    if not allow_gaps and index != expected_index:
        raise OrderError(f"frame {index} arrived, expected frame {expected_index}")


def decode(
    parts: Sequence[Any], expected_index: int | None = None, allow_gaps: bool = False
) -> Frame | EndOfStream:
    """Check one message and return a :class:`Frame` or an :class:`EndOfStream`.

    ``parts`` are ZMQ frames or bytes. With ``expected_index`` the frame's index must
    equal it (or, with ``allow_gaps``, be at least it: a lossy stream; see
    :func:`check_order`). Raises a :class:`FrameError` subclass for anything malformed.
    A shared-memory reference is checked for its form only (:mod:`.shared` resolves it).
    """
    if len(parts) not in (1, 2):
        raise PartsError(f"message has {len(parts)} parts, expected 2 (frame) or 1 (end)")
    header = _header(parts[0])
    if header.get("end") is True:
        if len(parts) != 1:
            raise PartsError("end-of-stream message must have a single part")
        count = header.get("count")
        if not _is_int(count) or count < 0:
            raise HeaderError(f"end-of-stream count must be a non-negative integer: {count!r}")
        return EndOfStream(count)
    shm = header.get("shm")
    if shm is not None:
        shm = _shared_ref(shm)
        if len(parts) == 2 and _nbytes(parts[1]):
            raise PartsError("a shared-memory frame must not carry a buffer part")
    elif len(parts) != 2:
        raise PartsError("frame header without a data buffer")
    if "dtype" not in header or not isinstance(header["dtype"], str):
        raise DTypeError(f"header has no dtype string: {header.get('dtype')!r}")
    dtype = check_dtype(header["dtype"])
    shape = header.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(_is_int(size) and size >= 0 for size in shape)
    ):
        raise HeaderError(f"shape must be a list of non-negative integers: {shape!r}")
    index = header.get("index")
    if not _is_int(index) or index < 0:
        raise HeaderError(f"index must be a non-negative integer: {index!r}")
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        raise MetadataError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    expected = math.prod(shape) * dtype.itemsize
    size = shm.size if shm is not None else _nbytes(parts[1])
    if size != expected:
        raise SizeMismatchError(
            f"buffer has {size} bytes, shape {shape} of {dtype.str} needs {expected}"
        )
    check_order(index, expected_index, allow_gaps)
    if shm is not None:
        return Frame(dtype, tuple(shape), index, metadata, None, shm)
    buffer = getattr(parts[1], "buffer", parts[1])
    return Frame(dtype, tuple(shape), index, metadata, buffer)


__all__ = [
    "MAX_HEADER_BYTES",
    "DTypeError",
    "DataPlaneError",
    "DataPlaneTimeout",
    "EndOfStream",
    "Frame",
    "FrameError",
    "HeaderError",
    "MetadataError",
    "OrderError",
    "PartsError",
    "SharedMemoryError",
    "SharedRef",
    "SizeMismatchError",
    "check_dtype",
    "check_order",
    "compose_header",
    "decode",
    "encode_end",
    "encode_header",
    "encode_metadata",
]
