"""The served models: loaded from the model store at start, each with its load status, so one bad model is
reported rather than taking the service down. Requests reach models only through this table, by name and
version: nothing a client sends becomes a file path or reaches an unpickler.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import bentoml

from serving.errors import ServingError
from training.stages import aliases_of
from training.store import StoredModel, load_model, parse_ref, resolve_ref

logger = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}$"
MODEL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}(@[A-Za-z0-9_][A-Za-z0-9_\-]{0,30})?$"  # a name, or task@stage


class ModelNotServed(ServingError, LookupError):
    """No configured model answers to this name (or version): 404 where the client named it."""

    status = 404
    reason = "unknown_model"


class ModelUnavailable(ServingError, LookupError):
    """The model is configured but not loaded (it failed to, or its stage is empty): a server-side fault, 503."""

    status = 503
    reason = "model_not_loaded"

    def __init__(self, entry: ModelEntry):
        failed = "is not available" if entry.status == "empty" else "failed to load"
        super().__init__(f"model {entry.requested!r} {failed}: {entry.error}")
        self.why = f"{entry.requested}: {entry.error}"  # what the purchase endpoints' 503 adds to the seed's detail


@dataclass
class ModelEntry:
    requested: str
    name: str
    status: Literal["loaded", "failed", "empty"]  # empty: an alias whose stage no version holds now
    load_seconds: float
    model: StoredModel | None = None
    error: str | None = None
    alias: str | None = None  # the configured alias (task@stage) this entry serves, if any
    swap_error: str | None = None  # the last version that failed to replace this one, and why

    @property
    def tag(self) -> str | None:
        return self.model.tag if self.model else None

    @property
    def version(self) -> str | None:
        return self.model.version if self.model else None

    @property
    def columns(self) -> list[str]:
        """The model's input columns, in the order its input schema lists them."""
        return list(self.model.input_schema["columns"]) if self.model else []

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "name": self.name,
            "requested": self.requested,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "load_seconds": round(self.load_seconds, 4),
            "aliases": [],
            "swap_error": self.swap_error,
        }
        if self.model is not None:
            bound = self.model.bound
            described.update(
                aliases=_aliases(self.model),
                labels=self.model.labels,
                task=self.model.task,
                metrics=self.model.metadata.get("metrics"),
                feature_importance=self.model.metadata.get("feature_importance"),
                threshold=self.model.threshold,
                input_schema=self.model.input_schema,
                bound_dataset=None
                if bound is None
                else {"rows": len(bound), "columns": list(bound.columns), "date": _latest_date(bound)},
            )
        return described


def _aliases(model: StoredModel) -> list[str]:
    try:
        return aliases_of(model.tag, model.task)
    except Exception as exc:  # noqa: BLE001 - an unreadable stage book costs the listing, not the answer
        logger.warning("cannot read the stage book: %s", exc)
        return []


def not_in_store(tag: str) -> str:
    """Why `tag` is not in the store, with what the store does have (the usual cause is a typo in SERVED_MODELS)."""
    name, _, version = tag.partition(":")
    try:
        if version and version != "latest":
            try:
                versions = [str(m.tag.version) for m in bentoml.models.list(name)]
            except bentoml.exceptions.NotFound:  # no version of that name at all: say what names there are
                versions = []
            if versions:
                return f"no version {version} of {name} in the store; it has: {', '.join(versions)}"
        names = sorted({m.tag.name for m in bentoml.models.list()})
    except Exception as exc:  # noqa: BLE001 - an unreadable store is itself the reason
        return f"no such model in the store, which cannot be listed: {exc}"
    return f"no such model in the store; the store has: {', '.join(names) or 'no models (run `make train`)'}"


def _latest_date(frame: Any) -> str | None:
    return str(frame["date"].max()) if "date" in frame.columns else None


def load_entry(requested: str) -> ModelEntry:
    """Resolve `requested` (name, name:version or task@stage) in the store, load it, check its bound data and warm
    it with one prediction on its reference sample; a failure is a `failed` entry carrying the error."""
    started = time.perf_counter()
    try:
        ref = parse_ref(requested)
    except ValueError as exc:
        return ModelEntry(requested, requested, "failed", 0.0, error=str(exc))
    if ref.is_alias:
        try:
            resolve_ref(ref)
        except LookupError as exc:
            return empty_entry(requested, str(exc))
    try:
        # A fixed tag loads as given (BentoML's own NotFound says what is missing); an alias through the stage book.
        model = load_model(resolve_ref(ref) if ref.is_alias else requested)
        # A model whose bound data no longer loads is as broken as one whose pipeline does not.
        _ = model.bound
        entry = ModelEntry(requested, model.name, "loaded", 0.0, model=model)
        # Warm-up: the first call pays for lazy imports and allocations; it also proves the pipeline predicts.
        model.predict_proba(model.reference()[entry.columns].head(1))
        entry.load_seconds = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported, never fatal
        error = not_in_store(requested) if isinstance(exc, bentoml.exceptions.NotFound) else f"{type(exc).__name__}: {exc}"
        logger.error("model %s failed to load: %s", requested, error)
        name = requested if ref.is_alias else str(ref.name)
        entry = ModelEntry(requested, name, "failed", time.perf_counter() - started, error=error)
    entry.alias = requested if ref.is_alias else None
    return entry


def empty_entry(alias: str, why: str) -> ModelEntry:
    return ModelEntry(alias, alias, "empty", 0.0, error=why, alias=alias)


class Registry:
    """The served models, one slot per configured reference. A slot's entry is replaced whole (hot swap, see
    serving/core/lifecycle.py): a request holds the entry it got from `get`, so it finishes on that version."""

    def __init__(self, tags: list[str]):
        self.entries: list[ModelEntry] = [load_entry(tag) for tag in dict.fromkeys(tags)]
        # Aliases asked for but not configured (DEFAULT_PURCHASE_MODEL=purchase@production with SERVED_MODELS=
        # purchase_gbm,...): alias -> the tag holding it, resolved once, kept current by the follower.
        self.resolved: dict[str, str | None] = {}

    def replace(self, old: ModelEntry, new: ModelEntry) -> None:
        """Swap one slot's entry atomically: one list item assignment, under the GIL."""
        self.entries[self.entries.index(old)] = new

    def add(self, entry: ModelEntry) -> None:
        self.entries = [*self.entries, entry]

    def remove(self, entry: ModelEntry) -> None:
        self.entries = [e for e in self.entries if e is not entry]

    def names(self) -> list[str]:
        return list(dict.fromkeys(entry.name for entry in self.entries))

    def get(self, name: str, version: str | None = None) -> ModelEntry:
        """The entry serving `name` (and `version`; None or "latest" means the configured default).

        Raises ModelNotServed for a model or version that is not served, ModelUnavailable for one that is not loaded.
        """
        candidates = [e for e in self.entries if e.name == name or e.requested == name]
        if not candidates and "@" in name:
            candidates = self._holders(name)
        elif not candidates and ":" in name:  # a concrete tag (a traffic plan's arm): any slot holding that version
            base, _, exact = name.partition(":")
            candidates = [e for e in self.entries if e.name == base and e.version == exact]
        if not candidates:
            raise ModelNotServed(f"model {name!r} is not served; served models: {', '.join(self.names())}")
        if version in (None, "latest"):
            # `name` or `name:latest` in the configuration is the default; otherwise the first listed version.
            defaults = [e for e in candidates if e.requested in (name, f"{name}:latest") or e.alias == name]
            entry = (defaults or candidates)[0]
        else:
            matching = [e for e in candidates if e.version == version or e.requested == f"{name}:{version}"]
            if not matching:
                served = ", ".join(str(e.version) for e in candidates if e.version)
                raise ModelNotServed(f"version {version!r} of model {name!r} is not served; served versions: {served}")
            entry = matching[0]
        if entry.status != "loaded":
            raise ModelUnavailable(entry)
        return entry

    def _holders(self, alias: str) -> list[ModelEntry]:
        """The served entries of the version that holds `alias` (an alias no slot is configured for)."""
        if alias not in self.resolved:
            self.refresh_alias(alias)
        tag = self.resolved.get(alias)
        return [e for e in self.entries if tag is not None and e.tag == tag]

    def refresh_alias(self, alias: str) -> None:
        try:
            self.resolved[alias] = resolve_ref(alias)
        except (LookupError, ValueError):
            self.resolved[alias] = None

    def describe(self) -> list[dict[str, Any]]:
        return [entry.describe() for entry in self.entries]

