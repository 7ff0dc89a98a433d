"""Tango device servers of the suite and the plumbing that runs them."""

from servers.database import EmbeddedDatabase, free_port
from servers.lifeline import exit_with_parent
from servers.process import (
    ProcessStartError,
    ServerProcess,
    register_server,
    start_server,
)

__all__ = [
    "EmbeddedDatabase",
    "ProcessStartError",
    "ServerProcess",
    "exit_with_parent",
    "free_port",
    "register_server",
    "start_server",
]
