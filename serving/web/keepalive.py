"""A keep-alive connection ends once it is `MAX_CONNECTION_AGE_SECONDS` old, so that a server's workers share its
clients.

With `WORKERS>1`, BentoML's workers accept from one listening socket, and a worker that wakes to a burst of new
connections accepts every one queued. In the bench, a load tool's 32 keep-alive connections split 0/32 or 4/28
between two workers in some rounds: one worker answered everything while the other idled, and two workers were
slower than one. A client that keeps its connections open (a load tool, a proxy's pool) never evens that out.

Ending each connection at an age, as gRPC servers do for the same reason (`MaxConnectionAge`) and Envoy
(`max_connection_duration`), makes such a client reconnect, and the worker with spare time reaches the listening
socket first. An age, not a count of requests as nginx's `keepalive_requests`: a count ends the connections of the
less busy worker sooner, since they answer faster, and so drains that worker (the bench's own client ended with
64-70% of the records on one worker). It also lets a Kubernetes Service, which balances connections rather than
requests, move long-lived clients between pods. The last response says `Connection: close` (RFC 9112, 9.6), so a
client never sends on a connection the server is closing; uvicorn closes it once that response is sent.
"""

from __future__ import annotations

import time
from typing import Any

# The connections a worker tracks at once (~0.5 MB): a connection the client closed itself leaves its entry behind,
# so past this the entries start over, which only lets some connections live up to twice as long.
MAX_TRACKED = 4_096
CLOSE = (b"connection", b"close")


class ConnectionAge:
    """ASGI middleware: notes when each connection (by its peer address) was first seen, and answers its first
    request after `max_age` seconds with `Connection: close`. `max_age` 0 never closes."""

    def __init__(self, app: Any, max_age: float):
        self.app = app
        self.max_age = max_age
        self.first_seen: dict[tuple[str, int], float] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        peer = scope.get("client") if scope["type"] == "http" else None
        if not self.max_age or not peer:  # off, the lifespan, or a peer without an address (a unix socket)
            await self.app(scope, receive, send)
            return
        peer, now = tuple(peer), time.monotonic()
        first = self.first_seen.get(peer)
        if first is None:
            if len(self.first_seen) >= MAX_TRACKED:
                self.first_seen.clear()
            self.first_seen[peer] = now
        elif now - first >= self.max_age:
            del self.first_seen[peer]

            async def closing(message: dict) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), CLOSE]}
                await send(message)

            await self.app(scope, receive, closing)
            return
        await self.app(scope, receive, send)
