"""A keep-alive connection's first response after MAX_CONNECTION_AGE_SECONDS says `Connection: close`
(serving/web/keepalive.py); its age counts from its first request, by peer address; 0 never closes."""

from __future__ import annotations

import asyncio

import pytest

from serving.web import keepalive
from serving.web.keepalive import ConnectionAge


async def _answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """The middleware's monotonic clock, set by the test."""
    now = [100.0]
    monkeypatch.setattr(keepalive.time, "monotonic", lambda: now[0])
    return now


def closes(app: ConnectionAge, peer=("127.0.0.1", 40000), kind: str = "http") -> bool:
    """Whether the app's answer to one request from `peer` asks to close the connection."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": kind, "client": peer}, None, send))
    start = next(message for message in sent if message["type"] == "http.response.start")
    assert sent[-1] == {"type": "http.response.body", "body": b"ok"}
    return (b"connection", b"close") in start["headers"]


def test_the_first_response_past_the_age_closes_and_the_next_connection_starts_over(clock):
    app = ConnectionAge(_answer, max_age=1.0)
    seen = []
    for at in (0.0, 0.5, 0.999, 1.0, 1.2, 1.5, 2.2, 2.3):
        clock[0] = 100.0 + at
        seen.append(closes(app))
    # Closed at 1.0 (age 1.0); the next connection from that address is new at 1.2 and old at 2.2.
    assert seen == [False, False, False, True, False, False, True, False]


def test_each_connection_has_its_own_age(clock):
    app = ConnectionAge(_answer, max_age=1.0)
    first, second = ("127.0.0.1", 40000), ("127.0.0.1", 40001)
    assert not closes(app, first)
    clock[0] += 0.6
    assert not closes(app, second)
    clock[0] += 0.6
    assert [closes(app, first), closes(app, second)] == [True, False]


def test_zero_never_closes_and_a_peer_without_an_address_is_not_tracked(clock):
    app = ConnectionAge(_answer, max_age=0)
    for _ in range(3):
        clock[0] += 10
        assert not closes(app)
    app = ConnectionAge(_answer, max_age=1.0)
    assert not closes(app, peer=None)
    assert app.first_seen == {}


def test_the_entries_start_over_past_the_tracked_connections(clock, monkeypatch):
    monkeypatch.setattr(keepalive, "MAX_TRACKED", 3)
    app = ConnectionAge(_answer, max_age=1.0)
    for port in range(4):
        assert not closes(app, ("127.0.0.1", port))
    assert len(app.first_seen) <= 3
    clock[0] += 5
    assert not closes(app, ("127.0.0.1", 0))  # its entry was dropped: seen anew rather than failing
    assert closes(app, ("127.0.0.1", 3))
