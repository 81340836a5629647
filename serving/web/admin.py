"""The admin API (/v1/admin/...): reload, load, unload and the promotion history, in the spirit of Triton's and
MLServer's repository APIs. Off (404) unless ADMIN_TOKEN is set; then every call needs `Authorization: Bearer`
with that token, and is logged with the caller's address, never with the token (the admin scope,
serving/web/auth.py). Loading a model takes seconds: the work runs on the thread pool, never on a prediction lane.
"""

from __future__ import annotations

from dataclasses import asdict

import bentoml
from fastapi import APIRouter

from serving.core.lifecycle import Follower
from serving.errors import ServingError
from serving.web.errors import DETAIL, documented
from serving.web.gate import DoorRoute
from serving.web.policy import Lane, Policy, Scope, declare, run_in
from training import stages

ADMIN = Policy("/v1/admin", Scope.ADMIN, Lane.THREADS, DETAIL.failing("The admin call failed; the error is in the server log."))
RESPONSES = documented(ADMIN.errors, {401: "No valid bearer token.", 403: "The token does not grant the admin scope.",
                                404: "ADMIN_TOKEN is unset: the admin routes are off (or: no such model)."})

router = APIRouter(prefix="/v1/admin", tags=["Admin APIs"], route_class=DoorRoute, responses=RESPONSES)


def _follower() -> Follower:
    return bentoml.get_current_service().predictor.follower


@router.post("/reload")
@declare(ADMIN)
async def reload() -> dict:
    """Re-resolve every served alias now and swap the ones that moved (this worker; others follow on their poll)."""
    changes = await run_in(ADMIN.lane, _follower().refresh)
    return {"changes": [asdict(change) for change in changes]}


@router.post("/models/{name}/load")
@declare(ADMIN)
async def load(name: str) -> dict:
    """Serve `name` (a name, name:version or task@stage): load and warm it, or swap a served alias that moved."""
    try:
        change = await run_in(ADMIN.lane, _follower().load, name)
    except ValueError as exc:
        raise ServingError(str(exc), "bad_reference", 422) from None
    if change.action == "failed":
        raise ServingError(f"{name} did not load: {change.error}", "load_failed", 409)
    return asdict(change)


@router.post("/models/{name}/unload")
@declare(ADMIN)
async def unload(name: str) -> dict:
    """Stop serving `name` (as configured, or by model name) in this worker."""
    change = await run_in(ADMIN.lane, _follower().unload, name)  # ModelNotServed: 404
    return asdict(change)


@router.get("/history")
@declare(ADMIN)
async def history(task: str | None = None) -> dict:
    """The promotion audit trail kept with the model store (of one task when `task` is given), oldest first."""
    moves = await run_in(ADMIN.lane, stages.history, task)
    return {"history": [asdict(move) for move in moves]}
