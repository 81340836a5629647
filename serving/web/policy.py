"""Every route declares its policy once: who may call it (token scope), what body it takes (media types, size),
where its work runs (lane), how its errors look (shape), and its name in metrics and the prediction log.

A door declares it beside its handler (`@declare(POLICY)` under the route decorator, or on a BentoML API method);
BentoML's own routes (health, metrics, docs) are declared here, by path. `Doors` reads the app's real route table
at start (serving/seam.py `served_routes`) and matches each request to its route as Starlette does (path templates,
so `/v2/models/{name}/versions/{version}/infer` is one route), a trailing slash included. The gate
(serving/web/gate.py) applies what it finds. A route without a declaration is refused (500, and an error in the
server log at start), and tests/fast/test_policy.py walks the same table: a new door cannot arrive unprotected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import anyio
from starlette.routing import compile_path

from serving.seam import served_routes
from serving.web.errors import DETAIL, ErrorShape
from serving.web.lanes import NicedLane
from settings import get_settings

logger = logging.getLogger("bentoml.service")
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
POLICY = "purchase_serving.policy"  # the ASGI scope key of the request's policy


class Scope(Enum):
    """Which bearer tokens a route takes (serving/web/auth.py)."""

    PUBLIC = "public"  # no token, ever: health, metrics, docs, model metadata
    PREDICT = "predict"  # API_TOKENS
    FEEDBACK = "feedback"  # FEEDBACK_TOKENS (else API_TOKENS); never open once any token is configured
    ADMIN = "admin"  # ADMIN_TOKEN; without it the admin routes are off (404)


class Lane(Enum):
    """Where a route's work runs. Two cores, two lanes for predictions: BentoML's thread limiter (`threads=1`) runs
    only /predict's adaptive batches, and one bulk thread runs the big requests (parsing, validating and scoring),
    so single records never queue behind a 10,000-record batch. One bulk thread, not more: parsing holds the GIL,
    and each model call already uses its OpenMP thread (serving/core/predictor.py)."""

    LOOP = "event loop"  # cheap work: metadata, health
    BATCH = "BentoML batch"  # admitted on the loop (one record, ~20 us), scored in BentoML's adaptive batches
    BULK = "bulk"  # the one bulk thread: big bodies, parsed, validated and scored there
    THREADS = "thread pool"  # blocking work that is not scoring (admin: store reads, model loads)
    # Explanations: one thread of their own at a lower priority (EXPLAIN_NICE), so they take only the CPU the
    # prediction lanes leave; at most EXPLAIN_QUEUE calls wait for it, each at most EXPLAIN_QUEUE_SECONDS (else 503).
    EXPLAIN = "explanation"


_BULK: anyio.CapacityLimiter | None = None
_EXPLAIN: NicedLane | None = None


def bulk_lane() -> anyio.CapacityLimiter:
    global _BULK
    if _BULK is None:
        _BULK = anyio.CapacityLimiter(1)
    return _BULK


def explain_lane() -> NicedLane:
    global _EXPLAIN
    if _EXPLAIN is None:
        settings = get_settings()
        _EXPLAIN = NicedLane("explain", settings.explain_nice, settings.explain_queue, settings.explain_queue_seconds)
    return _EXPLAIN


async def run_in(lane: Lane, func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in `lane`: inline on the event loop, on the bulk thread, on the thread pool, or on the
    explanation thread (a `LaneFull` 503 when its queue is full or the call waited too long to start)."""
    if lane is Lane.BULK:
        return await anyio.to_thread.run_sync(func, *args, limiter=bulk_lane())
    if lane is Lane.EXPLAIN:
        return await explain_lane().run(func, *args)
    if lane is Lane.THREADS:
        return await anyio.to_thread.run_sync(func, *args)
    return func(*args)


@dataclass(frozen=True)
class Policy:
    name: str  # the endpoint label in metrics and the prediction log
    scope: Scope
    lane: Lane = Lane.LOOP
    errors: ErrorShape = DETAIL
    media_types: tuple[str, ...] = ()  # a body of one of these (the gate reads it); () = no body is read
    max_body_bytes: int | None = None  # None: MAX_BODY_BYTES
    # BentoML APIs: (predictor, Call) -> the API's typed input; the gate runs it in `lane` before BentoML's route.
    admit: Callable[[Any, Any], Any] | None = None


def declare(policy: Policy) -> Callable[[F], F]:
    """Attach `policy` to a route's handler (under the route decorator, so the route table sees it)."""

    def attach(func: F) -> F:
        func.__door_policy__ = policy  # type: ignore[attr-defined]
        return func

    return attach


def policy_of(endpoint: Any) -> Policy | None:
    return getattr(endpoint, "__door_policy__", None)


# BentoML's own routes.
HEALTH = Policy("health", Scope.PUBLIC)
METRICS = Policy("metrics", Scope.PUBLIC)
DOCS = Policy("docs", Scope.PUBLIC)
BENTOML_ROUTES = {
    "/livez": HEALTH, "/healthz": HEALTH, "/readyz": HEALTH, "/metrics": METRICS,
    "/": DOCS, "/docs.json": DOCS, "/schema.json": DOCS, "/static_content/{path:path}": DOCS,
}
UNDECLARED = Policy("undeclared", Scope.ADMIN)  # never reached: such a route is refused before its policy matters


@dataclass(frozen=True)
class Door:
    path: str
    methods: frozenset[str] | None
    policy: Policy


class Doors:
    """The app's routes and their policies; `match` finds a request's route as Starlette's router would."""

    def __init__(self, doors: list[Door], undeclared: list[str]):
        self.undeclared = undeclared
        self._exact: dict[str, list[Door]] = {}
        self._templates: list[tuple[Any, list[Door]]] = []
        for door in doors:
            if "{" not in door.path:
                self._exact.setdefault(door.path, []).append(door)
                continue
            regex = compile_path(door.path)[0]
            for known, same in self._templates:
                if known.pattern == regex.pattern:
                    same.append(door)
                    break
            else:
                self._templates.append((regex, [door]))

    @classmethod
    def of(cls, app: Any, service: Any) -> Doors:
        doors, undeclared = [], []
        for route in served_routes(app, service):
            policy = policy_of(route.endpoint) or BENTOML_ROUTES.get(route.path)
            if policy is None:
                undeclared.append(f"{'|'.join(sorted(route.methods or ['*']))} {route.path}")
                policy = UNDECLARED
            doors.append(Door(route.path, route.methods, policy))
        if undeclared:
            logger.error("routes without a declared policy, refused until declared: %s", ", ".join(undeclared))
        return cls(doors, undeclared)

    def match(self, path: str, method: str) -> tuple[Door, str] | None:
        """(the route, its canonical path) of a request; a trailing slash is the same route."""
        canonical = path.rstrip("/") or "/"
        doors = self._exact.get(canonical)
        if doors is None:
            doors = next((same for regex, same in self._templates if regex.match(canonical)), None)
            if doors is None:
                return None
        wanted = "GET" if method == "HEAD" else method
        # A method the route does not take still meets its policy (a token first), then the app's 405.
        door = next((d for d in doors if d.methods is None or wanted in d.methods or method in d.methods), doors[0])
        return door, canonical
