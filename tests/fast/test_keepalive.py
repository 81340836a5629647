"""A keep-alive connection is answered `Connection: close` on its KEEPALIVE_REQUESTS-th response
(serving/web/keepalive.py), counted per peer address; 0 never closes."""

from __future__ import annotations

import asyncio

from serving.web import keepalive
from serving.web.keepalive import KeepAliveLimit


async def _answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def closes(app: KeepAliveLimit, peer=("127.0.0.1", 40000), kind: str = "http") -> bool:
    """Whether the app's answer to one request from `peer` asks to close the connection."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": kind, "client": peer}, None, send))
    start = next(message for message in sent if message["type"] == "http.response.start")
    assert sent[-1] == {"type": "http.response.body", "body": b"ok"}
    return (b"connection", b"close") in start["headers"]


def test_the_limit_th_response_of_a_connection_closes_it_and_the_next_connection_starts_over():
    app = KeepAliveLimit(_answer, limit=3)
    assert [closes(app) for _ in range(7)] == [False, False, True, False, False, True, False]


def test_each_connection_is_counted_by_its_own_address():
    app = KeepAliveLimit(_answer, limit=2)
    first, second = ("127.0.0.1", 40000), ("127.0.0.1", 40001)
    assert [closes(app, first), closes(app, second), closes(app, second), closes(app, first)] == [
        False, False, True, True]


def test_zero_never_closes_and_a_peer_without_an_address_is_not_counted():
    assert not any(closes(KeepAliveLimit(_answer, limit=0)) for _ in range(5))
    app = KeepAliveLimit(_answer, limit=1)
    assert not closes(app, peer=None)
    assert app.served == {}


def test_the_counts_start_over_past_the_tracked_connections(monkeypatch):
    monkeypatch.setattr(keepalive, "MAX_TRACKED", 3)
    app = KeepAliveLimit(_answer, limit=2)
    for port in range(4):
        assert not closes(app, ("127.0.0.1", port))
    assert len(app.served) <= 3
    assert not closes(app, ("127.0.0.1", 0))  # its count was dropped: it starts over rather than failing
