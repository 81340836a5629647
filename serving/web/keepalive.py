"""A keep-alive connection ends after `KEEPALIVE_REQUESTS` responses, so that a server's workers share its clients.

With `WORKERS>1`, BentoML's workers accept from one listening socket, and a worker that wakes to a burst of new
connections accepts every one queued. In the bench, a load tool's 32 keep-alive connections split 0/32 or 4/28
between two workers in some rounds: one worker answered everything while the other idled, and two workers were
slower than one. A client that keeps its connections open (a load tool, a proxy's pool) never evens that out.

Ending each connection after a number of responses, as nginx (`keepalive_requests`) and Hypercorn
(`keep_alive_max_requests`) do, makes such a client reconnect, and the worker with spare time reaches the listening
socket first. It also lets a Kubernetes Service, which balances connections rather than requests, move long-lived
clients between pods. The last response says `Connection: close` (RFC 9112, 9.6), so a client never sends on a
connection the server is closing; uvicorn closes it once that response is sent.
"""

from __future__ import annotations

from typing import Any

# The connections a worker counts at once (~0.5 MB): a connection the client closed itself leaves its count behind,
# so past this the counts start over, which only lets some connections live up to twice as long.
MAX_TRACKED = 4_096
CLOSE = (b"connection", b"close")


class KeepAliveLimit:
    """ASGI middleware: counts each connection's requests by its peer address, and answers the `limit`-th with
    `Connection: close`. `limit` 0 never closes."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit
        self.served: dict[tuple[str, int], int] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        peer = scope.get("client") if scope["type"] == "http" else None
        if not self.limit or not peer:  # off, the lifespan, or a peer without an address (a unix socket)
            await self.app(scope, receive, send)
            return
        peer = tuple(peer)
        served = self.served.pop(peer, 0) + 1
        if served < self.limit:
            if len(self.served) >= MAX_TRACKED:
                self.served.clear()
            self.served[peer] = served
            await self.app(scope, receive, send)
            return

        async def closing(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), CLOSE]}
            await send(message)

        await self.app(scope, receive, closing)
