"""Binding a ZMQ socket to tcp with a chosen TCP congestion control for its connections.

A Linux host may send with BBR (``net.ipv4.tcp_congestion_control``). BBR paces a
connection at the bandwidth it has estimated. A frame stream whose receiver is slow for a
moment early on (its first frames fault their buffers in) gets a low estimate and can keep
it for the whole stream: over loopback, ten streams of 500 frames of 8 MB (raw pyzmq, the
sender bound) went at 2.3-5.3 GB/s with BBR and at 4.6-5.5 GB/s with CUBIC or Reno
(``benchmarks/README.md``, ``bench_dataplane.py``, session 20). Frames are bulk data on a
local network, where the loss-based controls do well.

libzmq has no option for the congestion control, but it binds to a listening socket it is
given (``ZMQ_USE_FD``), and the connections accepted there inherit that socket's control.
So a sender that binds on a host whose default paces (BBR) sets CUBIC or Reno on a
listening socket of its own, made here. Any other default stays.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import weakref
from collections.abc import Sequence

import zmq

#: Congestion controls for the connections of a bound sender in place of a pacing one,
#: tried in turn: CUBIC (Linux's default), else Reno (which any process may choose).
#: Empty: the host's, always.
TCP_CONGESTION: tuple[str, ...] = ("cubic", "reno")

#: Host defaults that pace a connection at its bandwidth estimate: a bound sender replaces
#: them. Any other default (CUBIC, or a site's deliberate choice) stays.
PACED: frozenset[str] = frozenset({"bbr", "bbr2", "bbr3"})

#: The congestion control of the connections of each ZMQ socket :func:`bind` bound.
_CHOSEN: weakref.WeakKeyDictionary[zmq.Socket, str] = weakref.WeakKeyDictionary()


def _ipv4_address(address: str) -> tuple[str, int] | None:
    """Host (``""`` for ``*``) and port (0 for ``*``) of a ``tcp://host:port`` endpoint
    with an IPv4 host, or ``None`` where libzmq must resolve it (a host or interface
    name, IPv6, a malformed port: its own error is the one to raise)."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if port != "*" and not port.isdecimal():
        return None
    number = 0 if port == "*" else int(port)
    if host == "*":
        return "", number
    try:
        return (host, number) if ipaddress.ip_address(host).version == 4 else None
    except ValueError:
        return None


def current_congestion(sock: socket.socket) -> str:
    """The congestion control set on ``sock`` (at first the host's default)."""
    name = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    return name.split(b"\0", 1)[0].decode()


def choose_congestion(sock: socket.socket, names: Sequence[str]) -> str | None:
    """Set the first of ``names`` the kernel lets this process use on ``sock``; return it,
    or ``None`` if none could be set (the host's default stays)."""
    for name in names:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
        except OSError:  # not built into the kernel, or not allowed to this process
            continue
        return name
    return None


def bind(zmq_socket: zmq.Socket, address: str, congestion: Sequence[str] = TCP_CONGESTION
         ) -> str | None:
    """Bind ``zmq_socket`` to the tcp ``address`` (``tcp://host:port``, port ``*`` for any).
    If the host's default congestion control paces (:data:`PACED`), its connections use
    the first of ``congestion`` allowed here instead.

    Returns the control its connections use, or ``None`` where that is not known:
    ``congestion`` empty, or an address only libzmq resolves (a name, IPv6), which it
    binds itself. A failed bind raises :class:`zmq.ZMQError` as libzmq's own bind would."""
    parsed = _ipv4_address(address)
    if not congestion or parsed is None or not hasattr(socket, "TCP_CONGESTION"):
        zmq_socket.bind(address)
        return None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        default = current_congestion(listener)
        chosen = choose_congestion(listener, congestion) if default in PACED else None
        if chosen is None:  # the host's default stays: libzmq binds as it would
            listener.close()
            zmq_socket.bind(address)
            _CHOSEN[zmq_socket] = default
            return default
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libzmq does
        host = parsed[0]
        try:
            listener.bind(parsed)
            listener.listen(zmq_socket.getsockopt(zmq.BACKLOG))
        except OSError as error:
            raise zmq.ZMQError(error.errno or errno.EINVAL,
                               f"{address}: {error.strerror or error}") from error
        port = listener.getsockname()[1]
        zmq_socket.setsockopt(zmq.USE_FD, listener.fileno())
        try:
            zmq_socket.bind(f"tcp://{host or '*'}:{port}")
        finally:
            zmq_socket.setsockopt(zmq.USE_FD, -1)
    except BaseException:
        listener.close()
        raise
    listener.detach()  # libzmq closes it with its socket
    _CHOSEN[zmq_socket] = chosen
    return chosen


def congestion_of(zmq_socket: zmq.Socket) -> str | None:
    """The congestion control of ``zmq_socket``'s connections as :func:`bind` left it, or
    ``None`` if it did not bind the socket or could not tell."""
    return _CHOSEN.get(zmq_socket)


__all__ = ["PACED", "TCP_CONGESTION", "bind", "choose_congestion", "congestion_of",
           "current_congestion"]
