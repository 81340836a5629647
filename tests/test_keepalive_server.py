"""A real server ends a keep-alive connection once it is MAX_CONNECTION_AGE_SECONDS old (default 1 s): its first
response after that says `Connection: close` and the server closes the socket, so a client that keeps its
connections reconnects and the workers share it (serving/web/keepalive.py). Spoken over a raw socket, so no client
library hides a reconnect."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

from settings import Settings

MAX_AGE = Settings.model_fields["max_connection_age_seconds"].default


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


def test_the_default_server_closes_a_connection_once_it_is_old(server):
    assert MAX_AGE > 0
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        pending = bytearray()
        started = time.monotonic()
        answered: list[tuple[float, bool]] = []
        while not (answered and answered[-1][1]) and time.monotonic() - started < MAX_AGE + 10:
            head = exchange(sock, pending)
            assert head.startswith(b"http/1.1 200")
            # The server starts its clock at the first request it reads, after ours: before our MAX_AGE it is younger.
            answered.append((time.monotonic() - started, b"connection: close" in head))
            time.sleep(0.05)
        closing = [age for age, closed in answered if closed]
        assert closing, f"no response asked to close the connection in {MAX_AGE + 10} s"
        assert closing == [answered[-1][0]] and closing[0] >= MAX_AGE
        assert len(answered) > 5  # it was kept alive until then
        assert sock.recv(1) == b""  # closed by the server
