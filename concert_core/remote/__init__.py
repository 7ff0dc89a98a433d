"""Client proxies of Tango devices: remote devices behave like local concert devices.

This is the only part of ``concert_core`` that imports Tango.
"""

from concert_core.remote.calls import MAX_CONCURRENT_CALLS, call
from concert_core.remote.tango import (
    RemoteDevice,
    RemoteError,
    TangoDevice,
    concert_error,
    concert_state_of,
    find_family,
)

__all__ = ["MAX_CONCURRENT_CALLS", "RemoteDevice", "RemoteError", "TangoDevice", "call",
           "concert_error", "concert_state_of", "find_family"]
