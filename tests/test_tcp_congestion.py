"""The TCP congestion control of bound data-plane sockets (``concert_core.dataplane.tcp``),
on real sockets over loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess

import numpy as np
import pytest
import zmq

from concert_core.dataplane import Broadcaster, ImageReceiver, ImageSender, tcp
from tests.support import collect

LOOPBACK = "tcp://127.0.0.1:0"


def _port(endpoint: str) -> str:
    return endpoint.rpartition(":")[2]


def _controls_of_connections(port: str) -> list[str]:
    """Congestion controls of the established connections from local ``port``, as ``ss``
    shows them."""
    shown = subprocess.run(
        ["ss", "-tin", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, check=True).stdout
    known = ("cubic", "reno", "bbr", "htcp", "dctcp", "vegas", "westwood")
    return [word for word in shown.split() if word in known]


def _host_default() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return tcp.current_congestion(probe)


def _another_allowed_control(default: str) -> str:
    """A congestion control other than ``default`` that this process may set."""
    for name in ("reno", "cubic", "bbr"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if name != default and tcp.choose_congestion(probe, [name]) == name:
                return name
    pytest.skip(f"no congestion control but {default} may be set here")


async def _stream_one(sender: ImageSender, endpoint: str) -> None:
    frame = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
    async with ImageReceiver(endpoint) as receiver:
        await sender.send(frame)
        await sender.end()
        frames = await collect(receiver)
        assert len(frames) == 1 and np.array_equal(frames[0], frame)
        if shutil.which("ss"):  # what the accepted connection uses
            assert _controls_of_connections(_port(sender.endpoint)) == [
                sender.tcp_congestion]


async def test_a_bound_tcp_sender_replaces_a_pacing_default_of_the_host():
    default = _host_default()
    async with ImageSender(LOOPBACK) as sender:
        if default in tcp.PACED:  # BBR, as on the development VM
            assert sender.tcp_congestion in tcp.TCP_CONGESTION
        else:
            assert sender.tcp_congestion == default
        await _stream_one(sender, sender.endpoint)


async def test_a_pacing_default_is_replaced_by_the_first_control_allowed(monkeypatch):
    default = _host_default()
    monkeypatch.setattr(tcp, "PACED", frozenset({default}))  # whatever the host's is
    replacement = _another_allowed_control(default)
    async with ImageSender(LOOPBACK, tcp_congestion=("no-such-control", replacement)
                           ) as sender:
        assert sender.tcp_congestion == replacement != default
        await _stream_one(sender, sender.endpoint)


async def test_any_other_default_of_the_host_stays(monkeypatch):
    default = _host_default()
    monkeypatch.setattr(tcp, "PACED", frozenset())
    async with ImageSender(LOOPBACK) as sender:
        assert sender.tcp_congestion == default
        await _stream_one(sender, sender.endpoint)


async def test_a_wildcard_host_binds_all_interfaces_with_the_control(monkeypatch):
    monkeypatch.setattr(tcp, "PACED", frozenset({_host_default()}))
    async with ImageSender("tcp://*:0") as sender:
        assert sender.endpoint.startswith("tcp://0.0.0.0:")
        assert sender.tcp_congestion in tcp.TCP_CONGESTION
        await _stream_one(sender, f"tcp://127.0.0.1:{_port(sender.endpoint)}")


async def test_the_hosts_control_stays_when_asked_or_where_nothing_is_bound(tmp_path):
    async with ImageSender(LOOPBACK, tcp_congestion=()) as sender:
        assert sender.tcp_congestion is None
    async with ImageSender(f"ipc://{tmp_path}/frames.ipc") as sender:
        assert sender.tcp_congestion is None
    async with (ImageReceiver(LOOPBACK, bind=True) as receiver,
                ImageSender(receiver.endpoint, bind=False) as sender):
        assert sender.tcp_congestion is None


async def test_a_port_in_use_is_refused_like_libzmq_refuses_it_and_leaves_nothing_open(
        monkeypatch):
    made: list[socket.socket] = []

    class Recorded(socket.socket):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    async with ImageSender(LOOPBACK) as sender:
        taken = sender.endpoint
        monkeypatch.setattr(socket, "socket", Recorded)
        with pytest.raises(zmq.ZMQError, match="in use") as refused:
            ImageSender(taken)
        monkeypatch.undo()
        assert refused.value.errno == zmq.EADDRINUSE
        assert len(made) == 1 and made[0].fileno() == -1  # its listener was closed
        # The first sender still streams.
        async with ImageReceiver(taken) as receiver:
            await sender.send(np.zeros((32, 32), np.uint16))
            await sender.end()
            assert len(await collect(receiver)) == 1


def test_an_interface_name_is_left_to_libzmq():
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    try:
        assert tcp.bind(push, "tcp://lo:*") is None
        assert push.getsockopt(zmq.LAST_ENDPOINT).decode().startswith("tcp://127.0.0.1:")
        assert tcp.congestion_of(push) is None
    finally:
        push.close(linger=0)
        context.term()


def test_a_malformed_port_gets_libzmqs_own_error():
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    try:
        with pytest.raises(zmq.ZMQError) as refused:
            tcp.bind(push, "tcp://127.0.0.1:port")
        assert refused.value.errno == zmq.EINVAL
    finally:
        push.close(linger=0)
        context.term()


def test_unknown_controls_are_skipped_and_none_allowed_keeps_the_default():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        default = tcp.current_congestion(sock)
        assert tcp.choose_congestion(sock, ["no-such-control"]) is None
        assert tcp.current_congestion(sock) == default
        # Reno is built into every Linux kernel and allowed to every process.
        assert tcp.choose_congestion(sock, ["no-such-control", "reno"]) == "reno"
        assert tcp.current_congestion(sock) == "reno"


async def test_bound_broadcast_destinations_use_the_control(monkeypatch):
    monkeypatch.setattr(tcp, "PACED", frozenset({_host_default()}))
    async with ImageSender(LOOPBACK) as source:
        broadcaster = Broadcaster(source.endpoint, reliable_destinations=[LOOPBACK])
        try:
            (endpoint,) = broadcaster.reliable_endpoints
            async with ImageReceiver(endpoint) as receiver:
                await source.send(np.ones((128, 128), np.uint16))
                await source.end()
                await broadcaster.run()
                assert len(await collect(receiver)) == 1
                if shutil.which("ss"):
                    assert _controls_of_connections(_port(endpoint))[0] in tcp.TCP_CONGESTION
        finally:
            broadcaster.close()
