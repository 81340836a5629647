"""The admin API (/v1/admin/...): reload, load, unload and the promotion history, in the spirit of Triton's and
MLServer's repository APIs. Off (404) unless ADMIN_TOKEN is set; then every call needs `Authorization: Bearer`
with that token (serving/web/auth.py) and is logged with the caller's address, never with the token.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import anyio
import bentoml
from fastapi import APIRouter, Depends, HTTPException, Request

from serving.web.auth import UNAUTHORIZED, bearer_token, token_matches
from settings import get_settings
from training import stages

logger = logging.getLogger("bentoml.admin")


def require_admin(request: Request) -> None:
    token = get_settings().admin_token
    if token is None or not token.get_secret_value():
        raise HTTPException(404, "Not Found")
    caller = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
    if not token_matches(bearer_token(request.headers.get("authorization")), [token]):
        logger.warning("admin %s %s refused (no valid bearer token) from %s", request.method, request.url.path, caller)
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    logger.info("admin %s %s from %s", request.method, request.url.path, caller)


router = APIRouter(prefix="/v1/admin", tags=["Admin APIs"], dependencies=[Depends(require_admin)])


def _follower():
    return bentoml.get_current_service().predictor.follower


@router.post("/reload")
async def reload() -> dict:
    """Re-resolve every served alias now and swap the ones that moved (this worker; others follow on their poll)."""
    changes = await anyio.to_thread.run_sync(_follower().refresh)
    return {"changes": [asdict(change) for change in changes]}


@router.post("/models/{name}/load")
async def load(name: str) -> dict:
    """Serve `name` (a name, name:version or task@stage): load and warm it, or swap a served alias that moved."""
    try:
        change = await anyio.to_thread.run_sync(_follower().load, name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if change.action == "failed":
        raise HTTPException(409, f"{name} did not load: {change.error}")
    return asdict(change)


@router.post("/models/{name}/unload")
async def unload(name: str) -> dict:
    """Stop serving `name` (as configured, or by model name) in this worker."""
    try:
        change = await anyio.to_thread.run_sync(_follower().unload, name)
    except LookupError as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    return asdict(change)


@router.get("/history")
async def history(task: str | None = None) -> dict:
    """The promotion audit trail kept with the model store (of one task when `task` is given), oldest first."""
    moves = await anyio.to_thread.run_sync(stages.history, task)
    return {"history": [asdict(move) for move in moves]}
