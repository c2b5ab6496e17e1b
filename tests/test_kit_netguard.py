"""The session's network guard: loopback works, anything else is refused before it leaves."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from course_kit import netguard


def test_remote_connections_are_blocked():
    blocked = "may not (open network connections|resolve network names)"
    with pytest.raises(netguard.NetworkBlocked, match=blocked):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1, never routed
    with pytest.raises(OSError):
        urllib.request.urlopen("https://download.pytorch.org/", timeout=1)


def test_loopback_still_works():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()
