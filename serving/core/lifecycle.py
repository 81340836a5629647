"""Hot swap: the running service follows the stage book (the aliases it serves and the traffic plan), and loads or
unloads models on request.

Every MODEL_REFRESH_SECONDS (and at once on POST /v1/admin/reload) each worker reads the traffic plan
(training/traffic.py) and re-resolves each served alias in the stage book:
- an alias that names another version: that version is loaded and warmed on this thread (serving.core.registry.
  load_entry) while the old one keeps answering, then swapped in with one assignment. A request holds the entry it
  resolved, so it finishes on the version it started with; the old one is released when the last such request
  ends. One lock serializes loads, so at most two versions of a name are resident at once;
- the plan's `load` list, and the references its weights and shadows name that no slot answers, are loaded; its
  `unload` list is dropped (unless the plan routes traffic to it), and so are slots it no longer routes to, after
  routing has left them (a request never finds its routed model gone);
- then `on_refreshed(plan)` hands the plan to the predictor, which applies its weights and shadows.

A version that fails to load or warm is reported (its slot's `swap_error` in GET /v1/models, the
`serving_model_swaps_total{result="failed"}` counter, the server log) and not retried until the alias moves again;
the old version keeps serving. A reference of the plan that fails to load is retried when the plan changes.
Every swap, failed load, load and unload is a line in the server log with the alias and the old and new versions.
Each worker process runs its own follower: with WORKERS > 1, workers switch within one refresh period of each other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from serving.core.registry import ModelEntry, ModelNotServed, Registry, empty_entry, load_entry
from training import stages, traffic
from training.store import parse_ref, resolve_ref

# BentoML's server log shows this logger's info lines (a module's own logger would be silent).
events = logging.getLogger("bentoml.service")

SWAPS = Counter("serving_model_swaps", "Hot swaps of a served alias to another version", ["alias", "result"])
SWAP_SECONDS = Histogram(
    "serving_model_swap_seconds", "Load and warm-up time of a version swapped in", ["alias"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


@dataclass
class Change:
    """What one refresh did to one served reference."""

    requested: str
    action: str  # "swapped", "failed", "emptied", "loaded", "unloaded"
    from_version: str | None = None
    to_version: str | None = None
    error: str | None = None


def _how(alias: str, tag: str) -> str:
    """Why an alias names `tag` now, from the stage book's history (a promotion, a rollback, a rollout)."""
    ref = parse_ref(alias)
    try:
        how = stages.why_held(str(ref.task), str(ref.stage), tag)
    except Exception as exc:  # noqa: BLE001 - an unreadable history costs the log line's reason, not the swap
        how = f"history unreadable: {exc}"
    return f" ({how})" if how else ""


class Follower:
    def __init__(self, registry: Registry, refresh_seconds: float, configured: list[str],
                 on_change: Callable[[ModelEntry, ModelEntry | None], None] | None = None,
                 on_refreshed: Callable[[traffic.Plan], None] | None = None):
        self.registry = registry
        self.refresh_seconds = refresh_seconds
        self.configured = list(dict.fromkeys(configured))  # SERVED_MODELS and SHADOW_MODELS
        self.on_change = on_change  # (new entry, replaced entry or None): metrics and signals follow the swap
        self.on_refreshed = on_refreshed  # the plan, after every refresh, load and unload: routing follows it
        self.plan = traffic.Plan()
        self.added: set[str] = set()  # slots loaded because the plan routed traffic to them
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}  # requested -> tag that failed; not retried until the alias moves on
        self._failed_plan: dict[str, int] = {}  # plan reference -> revision it failed at; retried on the next one
        self.plan_errors: dict[str, str] = {}  # plan reference -> why it does not load (GET /v1/models shows it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def initial(configured: list[str], plan: traffic.Plan) -> list[str]:
        """The references a worker loads at start: its configuration, less the plan's unload list, plus its load list."""
        return [ref for ref in dict.fromkeys([*configured, *plan.load]) if ref not in plan.unload]

    def start(self) -> None:
        if self.refresh_seconds > 0:
            self._thread = threading.Thread(target=self._run, name="model-follower", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the follower must outlive a bad read of the store
                events.exception("model refresh failed")

    def refresh(self) -> list[Change]:
        """Follow the plan and swap every served alias whose stage moved; returns what changed."""
        # The plan is read under the lock: read before an admin load recorded itself, it would unload that model again.
        with self._lock:
            try:
                plan = traffic.read()
            except Exception as exc:  # noqa: BLE001 - a plan that does not read keeps the last one; aliases still follow
                events.error("cannot read the stage book's traffic plan (keeping revision %d): %s", self.plan.revision, exc)
                plan = self.plan
            changes = self._sync(plan)
            for alias in list(self.registry.resolved):
                self.registry.refresh_alias(alias)
            for entry in list(self.registry.entries):
                change = self._follow(entry)
                if change is not None:
                    changes.append(change)
            self.plan = plan
        self._refreshed()
        return changes

    def _refreshed(self, plan: traffic.Plan | None = None) -> None:
        if self.on_refreshed is not None:
            self.on_refreshed(plan or self.plan)

    def _sync(self, plan: traffic.Plan) -> list[Change]:
        """Load what the plan asks for, drop what it unloads or no longer routes to."""
        routed = {ref for t in plan.tasks.values() for ref in (*t.weights, *t.shadow)}
        changes = []
        idle = {entry.requested for entry in self.registry.entries} - routed
        dropped = {ref for ref in idle if ref in plan.unload}
        unrouted = {ref for ref in idle if ref in self.added and ref not in plan.load} - dropped
        leaving = dropped | unrouted
        if leaving:
            # Routing leaves them first: a request routed by the old weights in between would find its model gone
            # (a 503 in the middle of a rollback). Arms of the plan not loaded yet stay out until they are.
            self._refreshed(plan)
        for entry in [e for e in self.registry.entries if e.requested in leaving]:
            self.registry.remove(entry)
            self.added.discard(entry.requested)
            why = "the stage book's unload list" if entry.requested in dropped else "the plan no longer routes to it"
            events.info("unloaded %s (%s): %s", entry.requested, entry.tag or entry.status, why)
            changes.append(Change(entry.requested, "unloaded", entry.version, None))
        wanted = {*plan.load, *routed}
        self.plan_errors = {ref: error for ref, error in self.plan_errors.items() if ref in wanted}
        slots = {entry.requested for entry in self.registry.entries}
        for ref in [*plan.load, *sorted(routed)]:
            if ref in slots or ref in plan.unload and ref not in routed or self._failed_plan.get(ref) == plan.revision:
                continue
            if ref in routed and ref not in plan.load and self._answered(ref):
                continue  # another slot answers it (an alias held by a served name, say)
            started = time.perf_counter()
            new = load_entry(ref)
            if new.status != "loaded":
                self._failed_plan[ref] = plan.revision
                self.plan_errors[ref] = str(new.error)
                events.error("cannot serve %s, which the stage book asks for (revision %d): %s", ref, plan.revision,
                             new.error)
                continue
            self.registry.add(new)
            self.plan_errors.pop(ref, None)
            slots.add(ref)
            if ref not in plan.load:
                self.added.add(ref)
            why = "the stage book's load list" if ref in plan.load else "the traffic plan routes to it"
            events.info("loaded %s (%s) in %.2fs: %s", ref, new.tag, time.perf_counter() - started, why)
            if self.on_change is not None:
                self.on_change(new, None)
            changes.append(Change(ref, "loaded", None, new.version))
        return changes

    def _answered(self, ref: str) -> bool:
        try:
            self.registry.get(ref)
        except ModelNotServed:
            return False
        except LookupError:
            return True  # served, but not loaded now (an empty stage): its slot says why
        return True

    def _follow(self, entry: ModelEntry) -> Change | None:
        ref = parse_ref(entry.requested)
        if not ref.is_alias and entry.status == "loaded":
            return None  # a fixed tag never moves
        try:
            tag = resolve_ref(ref)
        except LookupError as exc:
            if not ref.is_alias or entry.status == "empty":
                return None
            # The stage was emptied (its holder moved to another stage): stop answering for the alias.
            self.registry.replace(entry, empty_entry(entry.requested, str(exc)))
            events.info("%s no longer names a model (it named %s): %s", entry.requested, entry.tag, exc)
            return Change(entry.requested, "emptied", entry.version, None)
        if tag == entry.tag or self._failed.get(entry.requested) == tag:
            return None
        started = time.perf_counter()
        new = load_entry(entry.requested)
        how = _how(entry.requested, tag) if ref.is_alias else ""
        if new.status != "loaded":
            self._failed[entry.requested] = tag
            entry.swap_error = f"{tag}: {new.error}"
            SWAPS.labels(entry.requested, "failed").inc()
            events.error("not swapping %s to %s, keeping %s%s: %s", entry.requested, tag, entry.tag, how, new.error)
            return Change(entry.requested, "failed", entry.version, tag.split(":", 1)[-1], new.error)
        self.registry.replace(entry, new)
        self._failed.pop(entry.requested, None)
        SWAPS.labels(entry.requested, "swapped").inc()
        SWAP_SECONDS.labels(entry.requested).observe(time.perf_counter() - started)
        events.info("swapped %s: %s -> %s in %.2fs%s", entry.requested, entry.tag or entry.status, new.tag,
                    time.perf_counter() - started, how)
        if self.on_change is not None:
            self.on_change(new, entry)
        return Change(entry.requested, "swapped", entry.version, new.version)

    def load(self, requested: str, reason: str = "admin API") -> Change:
        """Serve `requested` (name, name:version or task@stage): load it now, or reload a slot that failed, and record
        it in the stage book's load list for every other worker. Both under the lock, so that no refresh in between
        applies the book as it was before (an earlier unload of the same model would undo this load)."""
        parse_ref(requested)  # ValueError for a malformed reference
        try:
            with self._lock:
                change = self._load(requested)
                if change.action != "failed":
                    traffic.set_served(requested, True, reason=reason)
                return change
        finally:
            self._refreshed()

    def _load(self, requested: str) -> Change:
        existing = next((e for e in self.registry.entries if e.requested == requested), None)
        if existing is not None and existing.status == "loaded":
            change = self._follow(existing)
            return change or Change(requested, "loaded", existing.version, existing.version)
        new = load_entry(requested)
        if new.status != "loaded":
            return Change(requested, "failed", None, None, new.error)
        if existing is not None:
            self.registry.replace(existing, new)
        else:
            self.registry.add(new)
        events.info("loaded %s (%s): admin API", requested, new.tag)
        if self.on_change is not None:
            self.on_change(new, existing)
        return Change(requested, "loaded", None, new.version)

    def unload(self, name: str, reason: str = "admin API") -> Change:
        """Stop serving the slot configured as `name`, or serving the model called `name` (ModelNotServed if none), and
        record the slot's reference in the stage book's unload list, under the lock as `load` does."""
        with self._lock:
            entry = next((e for e in self.registry.entries if name in (e.requested, e.name)), None)
            if entry is None:
                raise ModelNotServed(f"model {name!r} is not served")
            self.registry.remove(entry)
            self.added.discard(entry.requested)
            events.info("unloaded %s (%s): admin API", entry.requested, entry.tag or entry.status)
            traffic.set_served(entry.requested, False, reason=reason)
        self._refreshed()
        return Change(entry.requested, "unloaded", entry.version, None)
