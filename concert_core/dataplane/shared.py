"""Frames in shared memory, for a sender and receivers on one host.

A sender owns rings of slots (:class:`SharedRing`), each a POSIX shared-memory file
``/dev/shm/concert-<pid>-<16 hex digits>`` mapped with :mod:`mmap` (not
``multiprocessing.shared_memory``: its resource tracker would unlink a segment a mere
receiver attached). The file starts with a control area::

    0   magic b"CONCERT1" | slots (u32) | PID namespace (u32) | slot size (u64) | data offset (u64)
    64  one state byte per slot: 0 free, 1 in use

then, from the page-aligned data offset, ``slots`` slots of ``slot size`` bytes (a
multiple of the page size). The sender writes a frame into a free slot, marks it in use
and sends only the header with ``"shm": {"segment", "offset", "size"}``. The receiver
(:class:`SharedFrames`) maps the data read-only, hands out a zero-copy array on the slot
and marks the slot free again when that array (and every view of it) has been garbage
collected. A segment the sender replaces (a larger frame, a new stream while slots are
still held) is unlinked once all its slots are free.

A sender killed before it could unlink its segments (SIGKILL, a crash, ``os._exit``)
leaves them behind, holding their memory until the host reboots. The next ring made on
the host removes them (:func:`remove_orphans`): segments of the same user whose creator,
named by the PID in the file name, no longer runs. The control area records the PID
namespace the segment was made in (the inode of ``/proc/self/ns/pid``), so that a PID is
only looked up where it means the same process; a segment without it is never removed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import os
import re
import secrets
import stat
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from concert_core.dataplane.wire import SharedMemoryError, SharedRef

LOG = logging.getLogger(__name__)

#: Directory of POSIX shared memory (Linux).
SHM_DIR = "/dev/shm"
#: Names of segments: only these are ever opened under :data:`SHM_DIR`.
NAME_PATTERN = re.compile(r"concert-[0-9]{1,10}-[0-9a-f]{16}")
#: Slots of a ring unless the sender asks for another number.
DEFAULT_SLOTS = 8
#: Most slots a segment may have.
MAX_SLOTS = 4096
#: Segments a receiver keeps mapped at most (idle ones beyond are unmapped).
MAX_ATTACHED = 16
#: Seconds between a receiver's checks for segments their sender removed.
PRUNE_PERIOD = 1.0
FREE, BUSY = 0, 1

_MAGIC = b"CONCERT1"
_HEADER = struct.Struct("<8sIIQQ")
_STATES = 64
_PAGE = mmap.PAGESIZE
#: Flags of the segments' mappings: the page tables are filled in one pass when a
#: segment is mapped (Linux), not by a fault per 4 KiB page on the first touch of each
#: slot, which cost a receiver about 3 ms per 8 MB slot: each stream's first frames.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _data_offset(slots: int) -> int:
    return _round_up(_STATES + slots, _PAGE)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _control_header(fd: int) -> tuple[os.stat_result, tuple | None]:
    """The status of the open file ``fd`` and the fields of its control header (None
    unless it is a regular file large enough to hold one)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size < _HEADER.size:
        return info, None
    return info, _HEADER.unpack(os.pread(fd, _HEADER.size, 0))


def _pid_namespace() -> int:
    """The inode of this process's PID namespace (a 32-bit number), 0 where unknown."""
    try:
        inode = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0
    return inode if 0 < inode <= 0xFFFFFFFF else 0


#: Written into every segment this process makes; 0 (unknown) disables the removal of
#: orphans here and of this process's segments elsewhere.
_NAMESPACE = _pid_namespace()


def _gone(pid: int) -> bool:
    """Whether no process ``pid`` exists (in this PID namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # another user's process, or no valid PID
        return False
    return False


def remove_orphans(directory: str = SHM_DIR) -> list[str]:
    """Unlink the segments in ``directory`` whose sender was killed before it could
    unlink them; return their names. Only segments of this user, made in this PID
    namespace, whose creating process is gone are removed (a PID reused since keeps
    its segment). Mappings of a removed segment stay valid until they are unmapped."""
    if not _NAMESPACE:
        return []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        if not NAME_PATTERN.fullmatch(name):
            continue
        pid = int(name.split("-")[1])
        if not _gone(pid):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            info, header = _control_header(fd)
        except OSError:
            continue
        finally:
            os.close(fd)
        if (header is None or info.st_uid != os.geteuid() or header[0] != _MAGIC
                or header[2] != _NAMESPACE):
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as error:
            LOG.warning("cannot remove %s, left by a process that is gone: %s", path, error)
            continue
        LOG.info("removed %s (%d MiB), left by process %d that is gone", path,
                 info.st_size >> 20, pid)
        removed.append(name)
    return removed


class SharedRing:
    """A segment of ``slots`` slots of at least ``nbytes`` bytes each, created and owned
    by a sender (which alone takes slots; receivers free them). Unlinked by
    :meth:`unlink` or when garbage-collected."""

    def __init__(self, nbytes: int, slots: int = DEFAULT_SLOTS) -> None:
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be between 1 and {MAX_SLOTS}, not {slots}")
        self.slots = slots
        self.slot_size = _round_up(max(int(nbytes), 1), _PAGE)
        self.data_offset = _data_offset(slots)
        self.size = self.data_offset + slots * self.slot_size
        remove_orphans()
        self.name = f"concert-{os.getpid()}-{secrets.token_hex(8)}"
        self.path = os.path.join(SHM_DIR, self.name)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        self._finalizer = weakref.finalize(self, _unlink, self.path)
        try:
            # Reserve the memory now: a full /dev/shm fails here (OSError), not later
            # with SIGBUS on a write into the mapping.
            os.posix_fallocate(fd, 0, self.size)
            self._map = mmap.mmap(fd, self.size, _MAP_FLAGS)
        except BaseException:
            self._finalizer()
            raise
        finally:
            os.close(fd)
        _HEADER.pack_into(self._map, 0, _MAGIC, slots, _NAMESPACE, self.slot_size,
                          self.data_offset)
        self._cursor = 0

    @property
    def linked(self) -> bool:
        """Whether the segment's file still exists (receivers can attach it)."""
        return self._finalizer.alive

    def take(self) -> int | None:
        """A free slot, now marked in use, or ``None`` if every slot is in use. Slots are
        searched from after the last one taken, so a slot held long is skipped."""
        states = self._map
        start, end = _STATES + self._cursor, _STATES + self.slots
        found = states.find(b"\0", start, end)
        if found < 0:
            found = states.find(b"\0", _STATES, start)
            if found < 0:
                return None
        slot = found - _STATES
        states[found] = BUSY
        self._cursor = (slot + 1) % self.slots
        return slot

    def free(self, slot: int) -> None:
        """Mark ``slot`` free (a frame that was never sent)."""
        if not self._map.closed:
            self._map[_STATES + slot] = FREE

    def busy(self) -> int:
        """Number of slots in use."""
        if self._map.closed:
            return 0
        return self.slots - self._map[_STATES:_STATES + self.slots].count(0)

    def offset(self, slot: int) -> int:
        """Offset of ``slot`` in the segment."""
        return self.data_offset + slot * self.slot_size

    def ref(self, slot: int, size: int) -> SharedRef:
        """The header's reference to ``size`` bytes in ``slot``."""
        return SharedRef(self.name, self.offset(slot), size)

    def array(self, slot: int, dtype: np.dtype, count: int) -> np.ndarray:
        """A writable 1-D array of ``count`` items on ``slot``: the root every view of
        it keeps alive (its base is a memoryview holding the mapping)."""
        return np.frombuffer(self._map, dtype, count, self.offset(slot))

    def unlink(self) -> None:
        """Remove the segment's file (mappings stay valid until unmapped)."""
        self._finalizer()

    def close(self) -> None:
        """Unlink, and unmap unless arrays on the segment are still alive (then the
        mapping goes with the last of them)."""
        self.unlink()
        with contextlib.suppress(BufferError):
            self._map.close()

    def __repr__(self) -> str:
        return f"<SharedRing {self.name} {self.slots} x {self.slot_size} B>"


class _Attached:
    """A receiver's mappings of one segment: the control area read-write (to free
    slots), the slots read-only."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise SharedMemoryError(f"invalid shared-memory segment name {name!r}")
        self.name = name
        path = os.path.join(SHM_DIR, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            raise SharedMemoryError(f"cannot open shared-memory segment {name}: "
                                    f"{error.strerror}") from None
        try:
            info, header = _control_header(fd)
            if header is None:
                raise SharedMemoryError(f"{path} is not a shared-memory segment")
            magic, slots, _, slot_size, data_offset = header
            if (magic != _MAGIC or not 1 <= slots <= MAX_SLOTS or slot_size <= 0
                    or slot_size % _PAGE or data_offset != _data_offset(slots)
                    or data_offset + slots * slot_size > info.st_size):
                raise SharedMemoryError(f"{path} has no valid segment layout")
            self.control = mmap.mmap(fd, data_offset)
            try:
                self.data = mmap.mmap(fd, slots * slot_size, _MAP_FLAGS, mmap.PROT_READ,
                                      offset=data_offset)
            except BaseException:
                self.control.close()
                raise
        except OSError as error:
            os.close(fd)
            raise SharedMemoryError(f"cannot map {path}: {error}") from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.slots, self.slot_size, self.data_offset = slots, slot_size, data_offset
        self.outstanding = 0
        self.closing = False
        self._lock = threading.Lock()

    def unlinked(self) -> bool:
        """Whether the sender has removed the segment (no further frame will use it)."""
        return os.fstat(self.fd).st_nlink == 0

    def slot_of(self, ref: SharedRef) -> int:
        """The slot ``ref`` refers to; :class:`SharedMemoryError` unless it is exactly
        one slot's start, fits in it, and the slot is in use."""
        relative = ref.offset - self.data_offset
        slot, remainder = divmod(relative, self.slot_size)
        if relative < 0 or remainder or slot >= self.slots:
            raise SharedMemoryError(
                f"offset {ref.offset} is no slot of {self.name} ({self.slots} slots of "
                f"{self.slot_size} B from {self.data_offset})")
        if ref.size > self.slot_size:
            raise SharedMemoryError(
                f"size {ref.size} exceeds the slots of {self.name} ({self.slot_size} B)")
        if self.control[_STATES + slot] != BUSY:
            raise SharedMemoryError(f"slot {slot} of {self.name} is not in use")
        return slot

    def array(self, slot: int, dtype: np.dtype, count: int) -> tuple[np.ndarray, weakref.finalize]:
        """A read-only array on ``slot`` and the finalizer freeing the slot once the
        array is collected (numpy views keep their ``frombuffer`` root alive)."""
        root = np.frombuffer(self.data, dtype, count, slot * self.slot_size)
        with self._lock:
            self.outstanding += 1
        finalizer = weakref.finalize(root, self.release, slot)
        finalizer.atexit = False
        return root, finalizer

    def release(self, slot: int) -> None:
        """Free ``slot`` (any thread); unmap if closing and it was the last frame."""
        with self._lock:
            self.control[_STATES + slot] = FREE
            self.outstanding -= 1
            last = self.closing and self.outstanding == 0
        if last:
            self._unmap()

    def close(self) -> None:
        """Unmap now, or once the frames still alive are collected."""
        with self._lock:
            self.closing = True
            idle = self.outstanding == 0
        if idle:
            self._unmap()

    def _unmap(self) -> None:
        # The frame being collected may still export the mapping: then it is unmapped
        # with this object.
        with contextlib.suppress(BufferError):
            self.data.close()
        self.control.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class SharedFrames:
    """A receiver's view of shared-memory frames: attaches segments (cached by name),
    validates each reference and returns zero-copy read-only arrays on the slots.

    A slot is freed when the array returned for it, and every view of it, has been
    garbage collected (from any thread, in any order). :meth:`close` unmaps every
    segment, those with frames still alive once the last of them goes.
    """

    def __init__(self) -> None:
        self._segments: dict[str, _Attached] = {}
        self._lock = threading.Lock()
        self._pruned = time.monotonic()

    @property
    def attached(self) -> list[str]:
        """Names of the segments mapped now."""
        return list(self._segments)

    def array(
        self, ref: SharedRef, dtype: np.dtype, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, Callable[[], Any]]:
        """A read-only array of ``shape`` and ``dtype`` on the slot ``ref`` names, and a
        function freeing the slot at once (for a frame refused after all). Raises
        :class:`SharedMemoryError` for a reference that cannot be resolved."""
        count = math.prod(shape)
        if count * dtype.itemsize != ref.size:
            raise SharedMemoryError(f"shm size {ref.size} differs from shape {list(shape)} "
                                    f"of {dtype.str}")
        segment = self._attach(ref.segment)
        slot = segment.slot_of(ref)
        root, finalizer = segment.array(slot, dtype, count)
        return root.reshape(shape), finalizer

    def _attach(self, name: str) -> _Attached:
        segment = self._segments.get(name)
        if segment is not None:
            if time.monotonic() - self._pruned > PRUNE_PERIOD:
                self.prune()
            return segment
        segment = _Attached(name)
        self.prune(room=1)
        with self._lock:
            self._segments[name] = segment
        return segment

    def prune(self, room: int = 0) -> None:
        """Unmap the segments their sender removed (it replaced them), and idle ones
        beyond :data:`MAX_ATTACHED` minus ``room``, least recently attached first."""
        self._pruned = time.monotonic()
        with self._lock:
            for name, segment in list(self._segments.items()):
                if segment.unlinked():
                    del self._segments[name]
                    segment.close()
            for name, segment in list(self._segments.items()):
                if len(self._segments) + room <= MAX_ATTACHED:
                    break
                if segment.outstanding == 0:
                    del self._segments[name]
                    segment.close()

    def close(self) -> None:
        """Unmap every segment (those with live frames once the frames are gone)."""
        with self._lock:
            segments, self._segments = list(self._segments.values()), {}
        for segment in segments:
            segment.close()


# -- deferred unlinking of a closed sender's segments -------------------------------------
def close_rings(rings: list[SharedRing], linger: float) -> None:
    """Close ``rings`` (a closed sender's): at once where every slot is free or
    ``linger`` is 0, else from a daemon thread once they are, after ``linger`` seconds
    at the latest (receivers may still have to attach frames queued for them). Segments
    left at interpreter exit are unlinked then (by each ring's finalizer)."""
    waiting = []
    for ring in rings:
        if linger <= 0 or ring.busy() == 0:
            ring.close()
        else:
            waiting.append(ring)
    if not waiting:
        return

    def wait() -> None:
        deadline = time.monotonic() + linger
        pending = list(waiting)
        while pending:
            pending = [ring for ring in pending if ring.busy()]
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        for ring in waiting:
            ring.close()

    threading.Thread(target=wait, name="shm-linger", daemon=True).start()


__all__ = [
    "DEFAULT_SLOTS",
    "MAX_SLOTS",
    "NAME_PATTERN",
    "SHM_DIR",
    "SharedFrames",
    "SharedRing",
    "close_rings",
    "remove_orphans",
]
