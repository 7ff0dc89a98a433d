"""The ZMQ image data plane (contract §7): frames travel as a JSON header plus a raw
buffer (or, between processes on one host, with the buffer in shared memory:
:mod:`.shared`); reliable streams (PUSH/PULL) lose nothing, live streams (PUB/SUB) drop
and count.
Trigger lines (:mod:`.trigger`) simulate a TTL cable from a motor to a camera. Senders
that bind a tcp address choose their connections' congestion control (:mod:`.tcp`).

>>> async with ImageSender("tcp://127.0.0.1:0") as sender:
...     receiver = ImageReceiver(sender.endpoint)
"""

from concert_core.dataplane.broadcast import Broadcaster
from concert_core.dataplane.receiver import ImageReceiver, ReceivedStream
from concert_core.dataplane.sender import ImageSender, resolve_endpoint
from concert_core.dataplane.shared import SharedFrames, SharedRing, remove_orphans
from concert_core.dataplane.trigger import TriggerError, TriggerInput, TriggerOutput
from concert_core.dataplane.wire import (
    DataPlaneError,
    DataPlaneTimeout,
    DTypeError,
    EndOfStream,
    Frame,
    FrameError,
    HeaderError,
    MetadataError,
    OrderError,
    PartsError,
    SharedMemoryError,
    SharedRef,
    SizeMismatchError,
    decode,
    encode_end,
    encode_header,
)

__all__ = [
    "Broadcaster",
    "DTypeError",
    "DataPlaneError",
    "DataPlaneTimeout",
    "EndOfStream",
    "Frame",
    "FrameError",
    "HeaderError",
    "ImageReceiver",
    "ImageSender",
    "MetadataError",
    "OrderError",
    "PartsError",
    "ReceivedStream",
    "SharedFrames",
    "SharedMemoryError",
    "SharedRef",
    "SharedRing",
    "SizeMismatchError",
    "TriggerError",
    "TriggerInput",
    "TriggerOutput",
    "decode",
    "encode_end",
    "encode_header",
    "remove_orphans",
    "resolve_endpoint",
]
