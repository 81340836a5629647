"""Guarded rollouts: a candidate earns production on evidence and loses it on harm (docs/rollout.md).

    plan.py        the steps (replay, shadow, canary weights, production) and their budgets
    state.py       the saved state, the controller lock and the decision history, kept with the model store
    evidence.py    the servers' own metrics and model listings, read over HTTP; windows since a step's baseline
    gates.py       the harm gates: serving, errors, latency, drift
    quality.py     the quality gates: replay, and the sequential A/B verdict on outcomes
    controller.py  the loop: look, decide, act (traffic plan, rollback, promotion), save
    __main__.py    python -m training.rollout start|status|abort|history|resume
"""
