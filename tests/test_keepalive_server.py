"""A real server ends a keep-alive connection after KEEPALIVE_REQUESTS responses (default 100): the last says
`Connection: close` and the server closes the socket, so a client that keeps its connections reconnects and the
workers share it (serving/web/keepalive.py). Spoken over a raw socket, so no client library hides a reconnect."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from settings import Settings

LIMIT = Settings.model_fields["keepalive_requests"].default


def exchange(sock: socket.socket, pending: bytearray) -> bytes:
    """One GET /livez on the open socket; its response head (the body is read and dropped)."""
    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: test\r\n\r\n")
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection before answering"
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length:"))
    while len(rest) < length:
        rest += sock.recv(65536)
    pending[:] = rest[length:]
    return head.lower()


def test_the_default_server_closes_a_connection_after_its_limit(server):
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        pending = bytearray()
        heads = [exchange(sock, pending) for _ in range(LIMIT)]
        assert all(head.startswith(b"http/1.1 200") for head in heads)
        assert [b"connection: close" in head for head in heads] == [False] * (LIMIT - 1) + [True]
        assert sock.recv(1) == b""  # closed by the server
