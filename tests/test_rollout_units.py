"""Pure parts of the guarded rollout, in process: the plan's steps, the decision rules, the servers' evidence
(Prometheus text, windows across a server restart, quantiles, PSI), the gates' thresholds, the saved state and its
lock, and the traffic plan's file (in a store of its own, never the session's)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import orjson
import pytest

from training.rollout.controller import decide, verdict_of
from training.rollout.evidence import ServerView, above, histogram, parse_metrics, psi, quantile, window
from training.rollout.gates import Slo, Window, drift_gate, errors_gate, latency_gate, serving_gate
from training.rollout.plan import Budget, make_plan, parse_steps
from training.rollout.quality import verdict_view
from training.rollout.state import GateView

SLO = Slo(max_error_rate=0.01, max_p99_seconds=0.5, max_p99_ratio=3.0, max_psi=0.25, min_evidence=50)
CANDIDATE, CONTROL = "m:new", "m:old"


def test_steps_parse_and_production_comes_last():
    steps = parse_steps("replay,shadow,5,25,50")
    assert [(s.name, s.kind, s.weight) for s in steps] == [
        ("replay", "replay", 0.0), ("shadow", "shadow", 0.0), ("canary-5", "canary", 0.05),
        ("canary-25", "canary", 0.25), ("canary-50", "canary", 0.5), ("production", "production", 1.0)]
    assert [s.name for s in parse_steps("12.5%")] == ["canary-12.5", "production"]


@pytest.mark.parametrize(("text", "says"), [
    ("shadow,replay", "replay must"), ("5,shadow", "before the canary"), ("25,5", "above the step before"),
    ("100", "between 0 and 100"), ("fast", "'fast' is not"), ("shadow,shadow", "once"),
])
def test_bad_steps_are_refused_naming_the_item(text, says):
    with pytest.raises(ValueError, match=says):
        parse_steps(text)


def test_budgets_and_policy_are_checked():
    with pytest.raises(ValueError, match="budget seconds"):
        make_plan(budget=Budget(min_seconds=10, max_seconds=5))
    with pytest.raises(ValueError, match="budget rows"):
        make_plan(budget=Budget(min_rows=10, max_rows=5))
    with pytest.raises(ValueError, match="--undecided"):
        make_plan(undecided="maybe")


def gates(**states: str) -> list[GateView]:
    names = ("serving", "errors", "latency", "drift", "quality")
    return [GateView(name, states.get(name, "pass"), f"{name} says {states.get(name, 'pass')}") for name in names]


BUDGET = Budget(min_seconds=10, max_seconds=100, min_rows=100, max_rows=10_000)
PLAN = make_plan("shadow,10,50", budget=BUDGET)
SHADOW, TEN, FIFTY = PLAN.steps[0], PLAN.steps[1], PLAN.steps[2]


@pytest.mark.parametrize(("step", "states", "elapsed", "rows", "plan", "action", "why"), [
    (TEN, {"errors": "fail"}, 1, 1, PLAN, "rollback", "errors: errors says fail"),  # harm: at once, any budget
    (TEN, {"quality": "fail"}, 1, 1, PLAN, "rollback", "quality: quality says fail"),
    (TEN, {"quality": "better"}, 5, 5000, PLAN, "hold", "minimum budget: 5/10 s"),
    (TEN, {"quality": "better"}, 20, 50, PLAN, "hold", "50/100 rows"),
    (TEN, {"quality": "better"}, 20, 500, PLAN, "advance", "better: quality says better"),
    (TEN, {"quality": "better", "latency": "hold"}, 20, 500, PLAN, "hold", "latency: latency says hold"),
    (SHADOW, {"quality": "n/a"}, 20, 500, PLAN, "advance", "no harm"),
    (TEN, {"quality": "hold"}, 50, 500, PLAN, "hold", "waiting (quality: quality says hold)"),
    (TEN, {"quality": "hold"}, 100, 500, PLAN, "advance", "--undecided earn"),  # earn: not the last canary
    (FIFTY, {"quality": "hold"}, 100, 500, PLAN, "rollback", "the last canary step"),  # earn: the last one
    (FIFTY, {"quality": "hold"}, 20, 10_000, PLAN, "rollback", "budget ran out"),  # the row budget ran out
    (FIFTY, {"quality": "hold"}, 100, 500, make_plan("10,50", budget=BUDGET, undecided="advance"), "advance", "--undecided advance"),
    (TEN, {"quality": "hold"}, 100, 500, make_plan("10,50", budget=BUDGET, undecided="rollback"), "rollback",
     "--undecided rollback"),
    (TEN, {"quality": "better", "drift": "hold"}, 100, 500, PLAN, "rollback", "without evidence from drift"),
])
def test_decisions(step, states, elapsed, rows, plan, action, why):
    decided, reason = decide(step, gates(**states), elapsed, rows, plan)
    assert decided == action and why in reason, reason


def test_the_gate_urls_verdict():
    assert verdict_of(gates(quality="better")) == "pass"
    assert verdict_of(gates(quality="hold")) == "hold"
    assert verdict_of(gates(quality="better", latency="hold")) == "hold"
    assert verdict_of(gates(errors="fail", quality="better")) == "fail"
    assert verdict_of([GateView("replay", "pass", "")]) == "pass"


METRICS = """\
# TYPE serving_predictions_total counter
serving_predictions_total{model="m",version="new",endpoint="/predict",predicted_class="0"} 70.0
serving_predictions_total{model="m",version="new",endpoint="/batch_predict",predicted_class="1"} 30.0
serving_predictions_total{model="m",version="other",endpoint="/predict",predicted_class="1"} 999.0
# TYPE serving_prediction_failures_total counter
serving_prediction_failures_total{model="m",version="new",endpoint="/predict"} 4.0
serving_prediction_failures_total{model="m",version="new",endpoint="shadow"} 2.0
# TYPE serving_inference_seconds histogram
serving_inference_seconds_bucket{le="0.01",model="m",version="new"} 90.0
serving_inference_seconds_bucket{le="0.1",model="m",version="new"} 100.0
serving_inference_seconds_bucket{le="+Inf",model="m",version="new"} 100.0
serving_inference_seconds_count{model="m",version="new"} 100.0
serving_inference_seconds_sum{model="m",version="new"} 1.0
# TYPE serving_traffic_revision gauge
serving_traffic_revision 7.0
"""


def test_metrics_are_read_per_version():
    revision, arms = parse_metrics(METRICS, {CANDIDATE, CONTROL})
    assert revision == 7.0
    new = arms[CANDIDATE]
    assert new["rows"] == 100 and new["failures"] == 4 and new["shadow_failures"] == 2
    assert new["latency:0.01"] == 90 and new["latency:+Inf"] == 100 and arms[CONTROL] == {}
    assert quantile(new, "latency", 0.5) == pytest.approx(0.01 * 50 / 90)  # linear inside the first bucket
    assert quantile(new, "latency", 0.99) == pytest.approx(0.01 + 0.09 * 9 / 10)
    assert histogram(new, "latency") == [90.0, 10.0, 0.0]


def test_windows_count_since_the_baseline_and_across_a_restart():
    before = {"a": {CANDIDATE: {"rows": 100.0}}, "b": {CANDIDATE: {"rows": 50.0}}}
    now = [ServerView("a", arms={CANDIDATE: {"rows": 130.0}}), ServerView("b", arms={CANDIDATE: {"rows": 20.0}}),
           ServerView("c", arms={CANDIDATE: {"rows": 5.0}}), ServerView("d", error="unreachable")]
    # a: +30; b restarted (20 < 50): its 20 count; c joined after the baseline: all 5.
    assert window(now, before)[CANDIDATE]["rows"] == 55.0


def test_quantile_agrees_with_the_data_within_a_bucket():
    values = np.random.default_rng(1).exponential(0.02, 5000)
    bounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, math.inf]
    counts = {f"latency:{b}": float((values <= b).sum()) for b in bounds}
    estimate, truth = quantile(counts, "latency", 0.99), float(np.quantile(values, 0.99))
    assert 0.05 < truth <= 0.1 and 0.05 < estimate <= 0.1  # the same bucket; linear inside it


def test_psi():
    same = [100.0, 200.0, 300.0, 400.0]
    assert psi(same, same) == pytest.approx(0.0)
    assert psi(same, [400.0, 300.0, 200.0, 100.0]) > 0.25
    assert psi(same, [101.0, 199.0, 303.0, 397.0]) < 0.01
    assert psi([0.0] * 4, same) is None


def arms(candidate: dict, control: dict, shadow: bool = False) -> Window:
    return Window(CANDIDATE, CONTROL, shadow, {CANDIDATE: candidate, CONTROL: control})


@pytest.mark.parametrize(("rows", "failures", "control", "state"), [
    (0, 5, (1000, 0), "fail"),  # a model that raises on every call: five rows are enough
    (1, 1, (1000, 0), "fail"),
    (995, 5, (1000, 0), "pass"),  # 0.5% against a 1% SLO
    (960, 40, (1000, 0), "fail"),  # 4%: its 99% lower bound is above the SLO
    (960, 40, (950, 50), "pass"),  # but not when control fails as often
    (30, 0, (1000, 0), "hold"),  # fewer rows than the evidence needed
])
def test_errors_gate(rows, failures, control, state):
    view = errors_gate(arms({"rows": rows, "failures": failures},
                            {"rows": control[0], "failures": control[1]}), SLO)
    assert view.state == state, view.summary


def latency(p99_bucket: float, calls: float = 100.0) -> dict:
    return {f"latency:{p99_bucket}": 0.0, "latency:0.001": 0.0, f"latency:{p99_bucket * 2}": calls,
            "latency:+Inf": calls}


def test_latency_gate():
    fast = {"latency:0.001": 100.0, "latency:0.0025": 100.0, "latency:+Inf": 100.0}
    slow = {"latency:0.001": 0.0, "latency:0.25": 0.0, "latency:1.0": 100.0, "latency:+Inf": 100.0}
    middling = {"latency:0.001": 0.0, "latency:0.025": 0.0, "latency:0.05": 100.0, "latency:+Inf": 100.0}
    assert latency_gate(arms(slow, fast), SLO).state == "fail"  # over the 0.5 s SLO
    assert latency_gate(arms(middling, fast), SLO).state == "pass"  # 50x control's, but under a tenth of the SLO
    three_times = {"latency:0.001": 0.0, "latency:0.1": 0.0, "latency:0.25": 100.0, "latency:+Inf": 100.0}
    assert latency_gate(arms(three_times, middling), SLO).state == "fail"  # ~0.25 s > 3 x control's ~0.05 s
    assert latency_gate(arms({"latency:0.01": 10.0, "latency:+Inf": 10.0}, fast), SLO).state == "hold"
    # One call of 32 the machine delayed is their p99, far over the limit, but no evidence of a slower model.
    one_slow = {"latency:0.001": 0.0, "latency:0.0025": 31.0, "latency:0.1": 31.0, "latency:0.25": 32.0,
                "latency:+Inf": 32.0}
    few = dataclasses.replace(SLO, min_evidence=20)  # as tests/test_rollout.py runs
    held_up = latency_gate(arms(one_slow, fast), few)
    assert held_up.state == "pass" and held_up.evidence["candidate_p99_seconds"] > 0.1, held_up
    two_of_32 = {**one_slow, "latency:0.0025": 30.0, "latency:0.1": 30.0}
    assert latency_gate(arms(two_of_32, fast), few).state == "fail"


def test_calls_above_a_threshold_interpolate_inside_the_bucket():
    counts = {"latency:0.1": 10.0, "latency:0.25": 40.0, "latency:+Inf": 50.0}
    assert above(counts, "latency", 0.05) == 45.0
    assert above(counts, "latency", 0.175) == 25.0
    assert above(counts, "latency", 0.25) == 10.0 and above(counts, "latency", 7.0) == 10.0
    assert above({}, "latency", 0.1) == 0.0


def test_drift_gate_reads_shadow_probabilities_at_the_shadow_step():
    centred = {f"probability:{b:.2f}": float(c) for b, c in zip(np.linspace(0.05, 1, 20), np.cumsum(np.full(20, 50)))}
    flipped_counts = np.cumsum(np.r_[np.full(10, 95), np.full(10, 5)])
    skewed = {f"shadow_probability:{b:.2f}": float(c) for b, c in zip(np.linspace(0.05, 1, 20), flipped_counts)}
    assert drift_gate(arms(skewed, centred, shadow=True), SLO).state == "fail"
    same = {k.replace("probability", "shadow_probability"): v for k, v in centred.items()}
    assert drift_gate(arms(same, centred, shadow=True), SLO).state == "pass"
    assert drift_gate(arms(same, centred, shadow=False), SLO).state == "hold"  # no served rows of the candidate


def test_serving_gate():
    loaded = {"name": "m", "version": "new", "status": "loaded"}
    assert serving_gate([ServerView("a", models=[loaded])], CANDIDATE).state == "pass"
    assert serving_gate([ServerView("a", models=[])], CANDIDATE).state == "hold"
    failed = ServerView("a", models=[], traffic_errors={CANDIDATE: "UnpicklingError: ..."})
    assert serving_gate([failed], CANDIDATE).state == "fail"
    assert serving_gate([ServerView("a", error="refused")], CANDIDATE).state == "hold"


def test_ab_verdicts_become_gate_states():
    def comparison(metric, verdict):
        return {"metric": metric, "verdict": verdict, "difference": 0.01, "always_valid": [0.001, 0.02],
                "outcomes_needed": 0 if verdict != "not yet significant" else 400}

    assert verdict_view("quality", [comparison("roc_auc", "better"), comparison("brier", "worse")], 9).state == "fail"
    assert verdict_view("quality", [comparison("roc_auc", "better"), comparison("brier", "not yet significant")],
                        9).state == "better"
    held = verdict_view("quality", [comparison("roc_auc", "not yet significant")], {"a": 4, "b": 5})
    assert held.state == "hold" and "on 9 outcomes; about 400 more" in held.summary


# --- the saved state and the traffic plan, in a model store of their own -----------------------------------------

@pytest.fixture
def own_store(tmp_path, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    return tmp_path / "models"


def rollout_state(**changes):
    from training.rollout.state import RolloutState

    return RolloutState(id="t-1", task="purchase", candidate=CANDIDATE, control=CONTROL, plan=PLAN, servers=("u",),
                        log="log", outcomes="out", slo=SLO.as_dict(), tick_seconds=1.0, started=1.0, **changes)


def test_state_round_trip_one_running_rollout_and_one_controller(own_store):
    from training.rollout import state

    saved = state.create(rollout_state(gates=(GateView("errors", "pass", "ok", {"rows": 3}),)))
    assert state.read("purchase") == saved
    with pytest.raises(ValueError, match="is still running"):
        state.create(rollout_state())
    with state.controller_lock("purchase"):
        state.update("purchase", lambda s: s.__class__(**{**s.__dict__, "controller_pid": 4242}))
        with pytest.raises(state.Busy, match=r"rollout t-1 already has a controller \(pid 4242\)"):
            with state.controller_lock("purchase"):
                pass
    with state.controller_lock("purchase"):  # released: a new controller may take it
        pass
    assert state.read_all()[0].summary()["step_name"] == "shadow"
    state.note(saved, "start", candidate=CANDIDATE)
    (own_store / state.HISTORY_FILE).open("ab").write(b'{"torn')
    assert [e["kind"] for e in state.history("purchase")] == ["start"]


def test_traffic_plan_revisions_and_audit(own_store):
    from training import stages, traffic

    assert traffic.read() == traffic.Plan()
    plan = traffic.set_traffic("purchase", {"m:old": 0.9, "m:new": 0.1}, ["m:shadow"], reason="r1")
    assert plan.revision == 1 and traffic.read().tasks["purchase"].weights == {"m:old": 0.9, "m:new": 0.1}
    assert traffic.set_served("m:extra", True).load == ("m:extra",)
    both = traffic.set_served("m:extra", False)
    assert both.load == () and both.unload == ("m:extra",) and both.revision == 3
    assert sorted(traffic.read().references()) == ["m:new", "m:old", "m:shadow"]
    assert traffic.clear_traffic("purchase").tasks == {}
    with pytest.raises(ValueError, match="must not all be 0"):
        traffic.set_traffic("purchase", {"m:old": 0.0})
    with pytest.raises(ValueError, match="not a model reference"):
        traffic.set_traffic("purchase", {"bad ref": 1.0})
    assert [m.action for m in stages.history()] == ["traffic", "load", "unload", "traffic"]
    assert orjson.loads((own_store / traffic.TRAFFIC_FILE).read_bytes())["revision"] == 4
    with pytest.raises(ValueError, match="'a' is not reference=weight"):
        traffic.parse_weights("a")


def test_psi_noise_bounds_what_two_samples_of_one_distribution_reach():
    """The walkthrough's false alarm: 50 canary rows against thousands gave PSI 0.30 of pure noise. The noise bound
    holds the gate at 50 rows and is exceeded by chance in about 1% of samples, at any size."""
    from training.rollout.evidence import psi_noise

    rng = np.random.default_rng(3)
    edges = np.linspace(0, 1, 21)
    for small in (50, 300, 3000):
        beyond = 0
        for _ in range(400):
            a = np.histogram(rng.beta(2, 4, small), edges)[0].tolist()
            b = np.histogram(rng.beta(2, 4, 5000), edges)[0].tolist()
            bins = sum(1 for x, y in zip(a, b) if x + y)
            beyond += psi(b, a) > psi_noise(small, 5000, bins)
        assert beyond / 400 < 0.03, (small, beyond)
    assert psi_noise(50, 5000, 20) > 0.25 > psi_noise(500, 5000, 20)
    same = {f"probability:{b:.2f}": float(c) for b, c in zip(np.linspace(0.05, 1, 20), np.cumsum(np.full(20, 50)))}
    few = {f"probability:{b:.2f}": float(c) for b, c in zip(np.linspace(0.05, 1, 20), np.cumsum(np.full(20, 3)))}
    held = drift_gate(arms(few, same), SLO)
    assert held.state == "hold" and "sampling noise alone" in held.summary


# --- the quality gate: realized outcomes when they are there, the label-free estimate before ---------------------

def write_served(path, rows: dict[str, np.ndarray], start: float) -> dict[str, list[str]]:
    """A prediction log of each tag's served probabilities (primary predictions, one id each); returns the ids."""
    from datetime import datetime, timezone

    import uuid

    ids, lines = {}, []
    for arm, (tag, probabilities) in enumerate(rows.items()):
        name, version = tag.split(":")
        ids[tag] = [str(uuid.UUID(int=(arm + 1) << 64 | i)) for i in range(len(probabilities))]  # ids are UUIDs
        for i, p in enumerate(probabilities):
            ts = datetime.fromtimestamp(start + 1 + i / 1000, timezone.utc).isoformat()
            lines.append(orjson.dumps({"ts": ts, "endpoint": "/batch_predict", "model_name": name,
                                       "model_version": version, "alias": None, "variant": version, "shadow": False,
                                       "prediction_id": ids[tag][i], "probability": float(p),
                                       "prediction": int(p >= 0.5)}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return ids


def identity_calibration(name: str, version: str):
    from monitoring.quality.estimate import ModelCalibration

    return ModelCalibration(threshold=0.5)


def test_the_quality_gate_estimates_before_outcomes_and_judges_realized_once_they_arrive(tmp_path):
    from training.rollout.quality import quality_gate

    rng = np.random.default_rng(7)
    sharp = np.concatenate([rng.uniform(0.02, 0.2, 300), rng.uniform(0.8, 0.98, 300)])  # a confident ranking
    vague = rng.uniform(0.35, 0.65, 600)  # the same traffic, ranked with little confidence: estimated ROC AUC ~0.55
    log, outcomes, start = tmp_path / "log.jsonl", tmp_path / "outcomes.jsonl", 1_790_000_000.0
    ids = write_served(log, {CANDIDATE: vague, CONTROL: sharp}, start)

    worse = quality_gate(str(log), str(outcomes), start, CANDIDATE, CONTROL, 50, identity_calibration)
    assert worse.state == "fail" and worse.evidence["judged"] == "estimate", worse
    assert worse.summary.startswith("estimate: candidate worse: estimated ROC AUC "), worse.summary
    assert worse.evidence["rows_with_outcome"] == {CANDIDATE: 0, CONTROL: 0}
    auc = {tag: e["estimate"]["roc_auc"] for tag, e in worse.evidence["estimates"].items()}
    assert auc[CANDIDATE]["ci95"][1] < auc[CONTROL]["ci95"][0] and auc[CONTROL]["value"] > 0.9
    better = quality_gate(str(log), str(outcomes), start, CONTROL, CANDIDATE, 50, identity_calibration)
    assert (better.state, better.evidence["judged"]) == ("better", "estimate"), better
    few = quality_gate(str(log), str(outcomes), start, CANDIDATE, CONTROL, 700, identity_calibration)
    assert few.state == "hold" and "600 served rows of 700 needed" in few.summary

    # Outcomes arrive (drawn from the control's probabilities for both arms' rows): the A/B verdict judges instead.
    truth = {tag: rng.random(600) < sharp for tag in ids}
    outcomes.write_bytes(b"\n".join(orjson.dumps({"ts": "2026-09-21T00:00:00+00:00", "prediction_id": i,
                                                  "outcome": int(y)})
                                    for tag in ids for i, y in zip(ids[tag], truth[tag])) + b"\n")
    realized = quality_gate(str(log), str(outcomes), start, CANDIDATE, CONTROL, 50, identity_calibration)
    assert realized.evidence["judged"] == "realized" and realized.summary.startswith("realized: "), realized
    assert realized.evidence["rows_with_outcome"] == {CANDIDATE: 600, CONTROL: 600}


def test_a_new_step_holds_until_its_own_gates_speak_and_a_promotion_keeps_what_earned_it(own_store, capsys):
    from training.rollout import state
    from training.rollout.controller import Controller

    better = tuple(gates(quality="better"))
    state.create(rollout_state(step=1, gates=better, verdict=verdict_of(list(better))))
    controller = Controller("purchase")
    fifty = controller._advance(state.read("purchase"), "better: canary-10")
    assert (fifty.current.name, fifty.gates, fifty.verdict) == ("canary-50", (), "hold")
    assert state.read("purchase").verdict == "hold"
    finishing = controller._advance(state.update("purchase", lambda s: dataclasses.replace(s, gates=better,
                                                                                          verdict="pass")), "better")
    assert (finishing.current.kind, finishing.gates, finishing.verdict) == ("production", better, "pass")
