"""The follower applies a traffic plan in an order no request can fall through (serving/core/lifecycle.py): routing
leaves a model before the model leaves the registry. CI once saw a 503 beside a rollback, where the follower had
dropped the candidate while the router still sent a quarter of the traffic to it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from serving.core import lifecycle
from serving.core.registry import ModelEntry, ModelNotServed, Registry
from serving.core.routing import ABRouter
from training import traffic

PRODUCTION, CANDIDATE = "purchase_gbm:prod", "purchase_gbm:cand"


def entry(ref: str) -> ModelEntry:
    name, _, version = ref.partition(":")
    return ModelEntry(ref, name, "loaded", 0.0, model=SimpleNamespace(name=name, version=version, tag=ref))


def plan(revision: int, weights: dict[str, float]) -> traffic.Plan:
    return traffic.Plan(revision, {"purchase": traffic.Traffic(weights)})


@pytest.fixture
def follower(monkeypatch):
    registry = Registry([])
    router = ABRouter({}, default=PRODUCTION)
    seen: list[tuple[dict, set[str]]] = []  # each routing change: the weights, and what the registry held then

    def follow_plan(applied: traffic.Plan) -> None:
        router.set_weights(applied.tasks["purchase"].weights if applied.tasks else {}, "test")
        router.follow(lambda arm: None if any(e.requested == arm for e in registry.entries) else "not loaded")
        seen.append((dict(router.weights), {e.requested for e in registry.entries}))

    monkeypatch.setattr(lifecycle, "load_entry", entry)
    followed = lifecycle.Follower(registry, 0, [PRODUCTION], on_refreshed=follow_plan)
    registry.add(entry(PRODUCTION))
    return SimpleNamespace(follower=followed, registry=registry, router=router, seen=seen, monkeypatch=monkeypatch)


def refresh_with(f, new_plan: traffic.Plan) -> list[lifecycle.Change]:
    f.monkeypatch.setattr(lifecycle.traffic, "read", lambda: new_plan)
    return f.follower.refresh()


def test_a_rollback_stops_routing_to_the_candidate_before_it_is_unloaded(follower):
    refresh_with(follower, plan(1, {PRODUCTION: 0.75, CANDIDATE: 0.25}))
    assert {e.requested for e in follower.registry.entries} == {PRODUCTION, CANDIDATE}
    assert [name for _, name in follower.router.arms] == [CANDIDATE, PRODUCTION]

    follower.seen.clear()
    changes = refresh_with(follower, plan(2, {PRODUCTION: 1.0}))
    assert [(c.requested, c.action) for c in changes] == [(CANDIDATE, "unloaded")]
    first_weights, held = follower.seen[0]
    assert first_weights == {PRODUCTION: 1.0} and CANDIDATE in held, "routing moved only after the unload"
    assert {e.requested for e in follower.registry.entries} == {PRODUCTION}
    with pytest.raises(ModelNotServed):
        follower.registry.get(CANDIDATE)
    assert [name for _, name in follower.router.arms] == [PRODUCTION]


@pytest.mark.parametrize("default", [PRODUCTION, "purchase_gbm:missing"])
def test_a_request_whose_arm_left_the_registry_before_the_routing_did_is_routed_again(default):
    """A rollback empties the candidate's alias slot a moment before the follower re-routes (CI saw the 503)."""
    from serving.core.predictor import Predictor

    registry = Registry([])
    registry.add(entry(PRODUCTION))
    caller = SimpleNamespace(router=ABRouter({CANDIDATE: 1.0}, default=default), registry=registry)
    caller._why_not_served = lambda name: Predictor._why_not_served(caller, name)
    if default == PRODUCTION:
        assert Predictor.purchase_model(caller, "key").requested == PRODUCTION
        assert caller.router.arms == [], "the candidate's arm is out until it is served again"
    else:  # nothing served answers: the caller hears so
        with pytest.raises(ModelNotServed):
            Predictor.purchase_model(caller, "key")
