"""Hot swap: the running service follows the stage aliases it serves, and loads or unloads models on request.

Every MODEL_REFRESH_SECONDS (and at once on POST /v1/admin/reload) each served alias is resolved in the store's
stage book; when it names another version, that version is loaded and warmed on a background thread
(serving.core.registry.load_entry) while the old one keeps answering, then swapped in with one assignment. A request
holds the entry it resolved, so it finishes on the version it started with; the old version is released when the
last such request ends. One lock serializes loads, so at most two versions of a name are resident at once.

A version that fails to load or warm is reported (its slot's `swap_error` in GET /v1/models, the
`serving_model_swaps_total{result="failed"}` counter, the server log) and not retried until the alias moves again;
the old version keeps serving. Each worker process runs its own follower: with WORKERS > 1, workers switch within
one refresh period of each other, so a client may see either version in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from serving.core.registry import ModelEntry, ModelNotServed, Registry, empty_entry, load_entry
from training.store import parse_ref, resolve_ref

logger = logging.getLogger(__name__)

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


class Follower:
    def __init__(self, registry: Registry, refresh_seconds: float,
                 on_change: Callable[[ModelEntry, ModelEntry | None], None] | None = None,
                 on_refreshed: Callable[[], None] | None = None):
        self.registry = registry
        self.refresh_seconds = refresh_seconds
        self.on_change = on_change  # (new entry, replaced entry or None): metrics and signals follow the swap
        self.on_refreshed = on_refreshed  # after every refresh, load and unload: the A/B split follows what is served
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}  # requested -> tag that failed; not retried until the alias moves on
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
                logger.exception("model refresh failed")

    def refresh(self) -> list[Change]:
        """Swap every served alias whose stage moved (and retry slots that never loaded); returns what changed."""
        with self._lock:
            for alias in list(self.registry.resolved):
                self.registry.refresh_alias(alias)
            changes = []
            for entry in list(self.registry.entries):
                change = self._follow(entry)
                if change is not None:
                    changes.append(change)
        self._refreshed()
        return changes

    def _refreshed(self) -> None:
        if self.on_refreshed is not None:
            self.on_refreshed()

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
            logger.info("%s no longer names a model: %s", entry.requested, exc)
            return Change(entry.requested, "emptied", entry.version, None)
        if tag == entry.tag or self._failed.get(entry.requested) == tag:
            return None
        started = time.perf_counter()
        new = load_entry(entry.requested)
        if new.status != "loaded":
            self._failed[entry.requested] = tag
            entry.swap_error = f"{tag}: {new.error}"
            SWAPS.labels(entry.requested, "failed").inc()
            logger.error("not swapping %s to %s, keeping %s: %s", entry.requested, tag, entry.tag, new.error)
            return Change(entry.requested, "failed", entry.version, tag.split(":", 1)[-1], new.error)
        self.registry.replace(entry, new)
        self._failed.pop(entry.requested, None)
        SWAPS.labels(entry.requested, "swapped").inc()
        SWAP_SECONDS.labels(entry.requested).observe(time.perf_counter() - started)
        logger.info("swapped %s: %s -> %s in %.2fs", entry.requested, entry.tag, new.tag, time.perf_counter() - started)
        if self.on_change is not None:
            self.on_change(new, entry)
        return Change(entry.requested, "swapped", entry.version, new.version)

    def load(self, requested: str) -> Change:
        """Serve `requested` (name, name:version or task@stage): load it now, or reload a slot that failed."""
        parse_ref(requested)  # ValueError for a malformed reference
        try:
            return self._load(requested)
        finally:
            self._refreshed()

    def _load(self, requested: str) -> Change:
        with self._lock:
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
            if self.on_change is not None:
                self.on_change(new, existing)
            return Change(requested, "loaded", None, new.version)

    def unload(self, name: str) -> Change:
        """Stop serving the slot configured as `name`, or serving the model called `name`; ModelNotServed if none."""
        with self._lock:
            entry = next((e for e in self.registry.entries if name in (e.requested, e.name)), None)
            if entry is None:
                raise ModelNotServed(f"model {name!r} is not served")
            self.registry.remove(entry)
        self._refreshed()
        return Change(entry.requested, "unloaded", entry.version, None)
