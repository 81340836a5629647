"""The admin API (/v1/admin/...): reload, load, unload and the promotion history, in the spirit of Triton's and
MLServer's repository APIs. Off (404) unless ADMIN_TOKEN is set; then every call needs `Authorization: Bearer`
with that token, and is logged with the caller's address, never with the token (the admin scope,
serving/web/auth.py). Loading a model takes seconds: the work runs on the thread pool, never on a prediction lane.

Load and unload act on every worker of every server sharing the model store: the worker that answers acts at once,
then records the reference in the stage book's load or unload list (training/traffic.py, audited), which every
worker follows on its next refresh (MODEL_REFRESH_SECONDS, or POST /v1/admin/reload).
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


FLEET = "recorded in the stage book: every worker of every server on this model store follows within MODEL_REFRESH_SECONDS"


def _follower() -> Follower:
    return bentoml.get_current_service().predictor.follower


@router.post("/reload")
@declare(ADMIN)
async def reload() -> dict:
    """Follow the stage book now: swap the aliases that moved, apply the traffic plan (this worker; the others
    follow on their own refresh)."""
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
    return {**asdict(change), "fleet": FLEET}


@router.post("/models/{name}/unload")
@declare(ADMIN)
async def unload(name: str) -> dict:
    """Stop serving `name` (as configured, or by model name) in every worker."""
    change = await run_in(ADMIN.lane, _follower().unload, name)  # ModelNotServed: 404; records the slot's reference
    return {**asdict(change), "fleet": FLEET}


@router.get("/history")
@declare(ADMIN)
async def history(task: str | None = None) -> dict:
    """The promotion audit trail kept with the model store (of one task when `task` is given), oldest first."""
    moves = await run_in(ADMIN.lane, stages.history, task)
    return {"history": [asdict(move) for move in moves]}
