"""A rollout's plan: its steps and the budget of each live step, typed and checked once at `start`.

    --steps replay,shadow,5,25,50      (the default; production is always the last step)

- `replay`: score the candidate offline on the last `replay_rows` logged rows of production traffic
  (monitoring/replay.py); one look, no traffic moves.
- `shadow`: the candidate shadow-scores every routed record; clients see production's answers only.
- a number: a canary step, the candidate's share of the routed traffic in percent.
- `production`: the audited promotion; the rollout ends.

A live step (shadow or canary) lasts at least `min_seconds` and `min_rows` candidate rows, and at most
`max_seconds` or `max_rows`, whichever comes first: "better" advances once the minimum is met, "not yet
significant" holds until the maximum, then `undecided` says what happens (UNDECIDED; docs/rollout.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEFAULT_STEPS = "replay,shadow,5,25,50"
# What a canary step whose budget ran out does while the A/B verdict is still "not yet significant":
# earn: the intermediate steps advance (more traffic, more evidence), the last one rolls back: production is earned;
# advance: every step advances (a candidate not found worse is promoted); rollback: every step rolls back.
UNDECIDED = ("earn", "advance", "rollback")


@dataclass(frozen=True)
class Step:
    name: str  # replay, shadow, canary-5, ..., production
    kind: str  # replay, shadow, canary or production
    weight: float = 0.0  # the candidate's share of the routed traffic (canary steps)


@dataclass(frozen=True)
class Budget:
    min_seconds: float = 60.0
    max_seconds: float = 900.0
    min_rows: int = 500
    max_rows: int = 50_000

    def check(self) -> None:
        if not 0 <= self.min_seconds <= self.max_seconds or self.max_seconds <= 0:
            raise ValueError(f"budget seconds: need 0 <= min ({self.min_seconds}) <= max ({self.max_seconds}), max > 0")
        if not 0 <= self.min_rows <= self.max_rows or self.max_rows <= 0:
            raise ValueError(f"budget rows: need 0 <= min ({self.min_rows}) <= max ({self.max_rows}), max > 0")


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    budget: Budget = Budget()
    undecided: str = "earn"  # at a canary step whose budget ran out with the quality verdict still open
    replay_rows: int = 20_000

    def last_canary(self, step: Step) -> bool:
        return step.kind == "canary" and step == [s for s in self.steps if s.kind == "canary"][-1]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        return cls(tuple(Step(**step) for step in data["steps"]), Budget(**data["budget"]), data["undecided"],
                   data["replay_rows"])

    def describe(self) -> str:
        b = self.budget
        return (f"{' -> '.join(step.name for step in self.steps)}; each live step {b.min_seconds:g}-{b.max_seconds:g} s "
                f"and {b.min_rows}-{b.max_rows} candidate rows; undecided at the budget: {self.undecided}")


def parse_steps(text: str) -> tuple[Step, ...]:
    """`replay,shadow,5,25,50` -> the steps, production appended; ValueError naming the bad item."""
    steps: list[Step] = []
    for item in (part.strip().lower() for part in text.split(",")):
        if not item:
            continue
        if item in ("replay", "shadow"):
            if any(step.kind in ("shadow", "canary") for step in steps) or any(s.name == item for s in steps):
                raise ValueError(f"--steps: {item} must come once, before the canary steps")
            if item == "replay" and steps:
                raise ValueError("--steps: replay must be the first step")
            steps.append(Step(item, item))
            continue
        try:
            percent = float(item.rstrip("%"))
        except ValueError:
            raise ValueError(f"--steps: {item!r} is not replay, shadow or a canary percentage") from None
        previous = max((step.weight for step in steps), default=0.0)
        if not 0 < percent < 100 or percent / 100 <= previous:
            raise ValueError(f"--steps: canary {item} must be between 0 and 100 and above the step before it")
        steps.append(Step(f"canary-{percent:g}", "canary", percent / 100))
    return (*steps, Step("production", "production", 1.0))


def make_plan(steps: str = DEFAULT_STEPS, *, budget: Budget = Budget(), undecided: str = "earn",
              replay_rows: int = 20_000) -> Plan:
    budget.check()
    if undecided not in UNDECIDED:
        raise ValueError(f"--undecided must be one of {', '.join(UNDECIDED)}")
    if replay_rows < 1:
        raise ValueError("--replay-rows must be at least 1")
    return Plan(parse_steps(steps), budget, undecided, replay_rows)
