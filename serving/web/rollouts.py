"""The rollouts, read-only: what a rollout's controller saved with the model store (training/rollout/state.py), as
every server on that store sees it. Public like /v1/models: model names, steps and gate evidence, no data.

    GET /v1/rollouts                      every task's current or last rollout
    GET|POST /v1/rollouts/{task}/gate     the task's rollout verdict, for Kubernetes progressive delivery:
        no `expect`:      200 {"verdict": "pass"|"hold"|"fail", ...} (an Argo Rollouts `web` metric reads it); the
                          quality gate's entry says what it judged: "judged": "realized" (outcomes) or "estimate"
        ?expect=pass:     200 when the verdict is pass, else 412 (Flagger's confirm-promotion webhook)
        ?expect=fail:     200 when the verdict is fail, else 412 (Flagger's rollback webhook)
    404 when the task has never had a rollout. POST takes (and ignores) Flagger's JSON payload.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from serving.errors import ServingError
from serving.web.errors import DETAIL, documented, json_response
from serving.web.gate import DoorRoute, request_id
from serving.web.policy import Lane, Policy, Scope, declare, run_in
from training.rollout import state

ROLLOUTS = Policy("/v1/rollouts", Scope.PUBLIC, Lane.THREADS,
                  DETAIL.failing("Reading the rollouts failed; the error is in the server log."))
router = APIRouter(tags=["Rollouts"], route_class=DoorRoute)


class NoRollout(ServingError):
    status = 404
    reason = "unknown_rollout"


def _states() -> list[dict]:
    return [s.summary() for s in state.read_all()]


@router.get("/v1/rollouts", responses=documented(ROLLOUTS.errors, {}))
@declare(ROLLOUTS)
async def list_rollouts(request: Request) -> Response:
    """Every task's current or last rollout: candidate, control, plan, step, weight, each gate's state and
    evidence, verdict, controller heartbeat."""
    return json_response(200, {"rollouts": await run_in(ROLLOUTS.lane, _states)}, request_id(request))


def _verdict(task: str) -> dict:
    current = state.read(task)
    if current is None:
        raise NoRollout(f"task {task!r} has no rollout")
    summary = current.summary()
    return {"task": task, "rollout": current.id, "status": current.status, "step": summary["step_name"],
            "weight": summary["weight"], "verdict": current.verdict, "reason": current.reason,
            "candidate": current.candidate, "control": current.control,
            "gates": [{"gate": g.gate, "state": g.state, "summary": g.summary,
                       **({"judged": g.evidence["judged"]} if "judged" in g.evidence else {})} for g in current.gates]}


GATE_ANSWERS = documented(ROLLOUTS.errors, {404: "The task has never had a rollout.",
                                            412: "`expect` was given and the verdict is another one."})


async def _gate(request: Request, task: str, expect: str | None) -> Response:
    body = await run_in(ROLLOUTS.lane, _verdict, task)
    if expect is not None and body["verdict"] != expect:
        detail = f"verdict is {body['verdict']}, not {expect}: {body['reason'] or body['status']}"
        return json_response(412, {**body, "detail": detail}, request_id(request))
    return json_response(200, body, request_id(request))


# One route per method: a route of two methods gives both operations one OpenAPI operationId.
@router.get("/v1/rollouts/{task}/gate", responses=GATE_ANSWERS)
@declare(ROLLOUTS)
async def gate(request: Request, task: str, expect: Literal["pass", "fail"] | None = Query(None)) -> Response:
    """The task's rollout verdict: pass (promoted, or better and unharmed at this step), hold, or fail (rolled
    back, aborted, or a gate failing). With `expect`, the status code says whether the verdict is that one."""
    return await _gate(request, task, expect)


@router.post("/v1/rollouts/{task}/gate", responses=GATE_ANSWERS)
@declare(ROLLOUTS)
async def gate_webhook(request: Request, task: str, expect: Literal["pass", "fail"] | None = Query(None)) -> Response:
    """The same verdict for a webhook that POSTs (Flagger's confirm-promotion and rollback hooks; their JSON payload
    is ignored)."""
    return await _gate(request, task, expect)
