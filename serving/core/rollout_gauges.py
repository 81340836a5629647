"""Rollouts on /metrics: every worker reads the saved rollout states kept with the model store (training/rollout/
state.py) every few seconds and exports, per task:

    serving_rollout_active{task}              1 while a rollout runs, else 0
    serving_rollout_step{task}                the current step, 1-based (replay, shadow, canaries, production)
    serving_rollout_candidate_weight{task}    the candidate's share of the routed traffic now
    serving_rollout_gate{task,gate}           -1 fail, 0 hold, 1 pass, 2 better (NaN: the gate does not apply now)
    serving_rollout_verdict{task}             what the gate URL says: -1 fail, 0 hold, 1 pass
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from serving.core.metrics import Poller
from training.rollout.state import read_all

logger = logging.getLogger(__name__)
GATE_CODES = {"fail": -1.0, "hold": 0.0, "pass": 1.0, "better": 2.0}
GATES = ("replay", "serving", "errors", "latency", "drift", "quality")
VERDICT_CODES = {"fail": -1.0, "hold": 0.0, "pass": 1.0}

ACTIVE = Gauge("serving_rollout_active", "1 while a rollout of the task runs", ["task"], multiprocess_mode="mostrecent")
STEP = Gauge("serving_rollout_step", "Current step of the task's rollout, 1-based", ["task"], multiprocess_mode="mostrecent")
WEIGHT = Gauge("serving_rollout_candidate_weight", "The rollout candidate's share of the routed traffic", ["task"],
               multiprocess_mode="mostrecent")
GATE = Gauge("serving_rollout_gate", "Rollout gate state: -1 fail, 0 hold, 1 pass, 2 better", ["task", "gate"],
             multiprocess_mode="mostrecent")
VERDICT = Gauge("serving_rollout_verdict", "Rollout verdict: -1 fail, 0 hold, 1 pass", ["task"],
                multiprocess_mode="mostrecent")


class RolloutGauges(Poller):
    def __init__(self, interval_s: float = 5.0):
        super().__init__("rollout-gauges", interval_s)

    def refresh(self) -> None:
        try:
            states = read_all()
        except OSError as exc:
            logger.warning("cannot read the rollout states: %s", exc)
            return
        for state in states:
            summary = state.summary()
            ACTIVE.labels(state.task).set(1.0 if state.active else 0.0)
            STEP.labels(state.task).set(float(state.step + 1))
            WEIGHT.labels(state.task).set(float(summary["weight"]) if state.active else 0.0)
            VERDICT.labels(state.task).set(VERDICT_CODES.get(state.verdict, 0.0))
            states = {gate.gate: gate.state for gate in state.gates}
            for gate in GATES:  # a gauge keeps its last value: a gate absent now must not show the last rollout's
                GATE.labels(state.task, gate).set(GATE_CODES.get(states.get(gate, ""), float("nan")))
