"""Block network sockets: only loopback and Unix sockets may connect.

Installed for the pytest process by ``conftest.py`` and injected into every kernel that the
notebook tests start, so that no test (and no quick-mode notebook) touches the network.
"""

from __future__ import annotations

import socket

_ALLOWED_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


class NetworkBlocked(OSError):
    """Raised when test code tries to reach the network."""


def _loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) and address else ""
    return str(host) in _ALLOWED_HOSTS or str(host).startswith("127.")


def install() -> None:
    """Patch ``socket`` so that connecting anywhere but loopback raises :class:`NetworkBlocked`."""
    if getattr(socket.socket, "_course_guarded", False):
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self, address):  # type: ignore[no-untyped-def]
        if not _loopback(address):
            raise NetworkBlocked(f"tests may not open network connections (to {address!r})")
        return original_connect(self, address)

    def connect_ex(self, address):  # type: ignore[no-untyped-def]
        if not _loopback(address):
            raise NetworkBlocked(f"tests may not open network connections (to {address!r})")
        return original_connect_ex(self, address)

    original_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host is not None and not _loopback((host,)):
            raise NetworkBlocked(f"tests may not resolve network names ({host!r})")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    socket.socket._course_guarded = True  # type: ignore[attr-defined]
