"""The one readiness answer, for BentoML's /readyz (`__is_ready__`) and the protocol's /v2/health/ready alike.

Ready means: no configured model failed to load, and the purchase routes have a model to answer them (an A/B arm
that is served, or DEFAULT_PURCHASE_MODEL). An alias whose stage is empty is a state of the model store, not a
fault of this server: it does not make the server unready (its own routes answer 503 for it, and GET /v1/models
says why), unless the purchase routes depend on it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.core.registry import Registry
from serving.core.routing import ABRouter


@dataclass(frozen=True)
class Readiness:
    ready: bool
    problems: list[str] = field(default_factory=list)  # why not, one line each

    def describe(self) -> str:
        return "; ".join(self.problems)


def readiness(registry: Registry, router: ABRouter) -> Readiness:
    problems = [f"{e.requested} failed to load" for e in registry.entries if e.status == "failed"]
    if not router.arms:
        try:
            registry.get(router.default)
        except LookupError as exc:
            problems.append(f"DEFAULT_PURCHASE_MODEL={router.default} is not served ({exc})")
    return Readiness(not problems, problems)
