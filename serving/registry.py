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

from serving.validation import RecordsValidator, purchase_validator
from training.schema import PURCHASE, input_schema, record_model, rules_of
from training.store import StoredModel, load_model

logger = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}$"


class ModelUnavailable(LookupError):
    """The model is configured but failed to load: a server-side fault, not the client's."""

    def __init__(self, entry: "ModelEntry"):
        super().__init__(f"model {entry.requested!r} failed to load: {entry.error}")
        self.reason = f"{entry.requested}: {entry.error}"  # what the purchase endpoints' 503 adds to the seed's detail


@dataclass
class ModelEntry:
    requested: str
    name: str
    status: Literal["loaded", "failed"]
    load_seconds: float
    model: StoredModel | None = None
    validator: RecordsValidator | None = None
    error: str | None = None

    @property
    def version(self) -> str | None:
        return self.model.version if self.model else None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "name": self.name,
            "requested": self.requested,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "load_seconds": round(self.load_seconds, 4),
        }
        if self.model is not None:
            bound = self.model.bound
            described.update(
                labels=self.model.labels,
                task=self.model.task,
                metrics=self.model.metadata.get("metrics"),
                threshold=self.model.threshold,
                input_schema=self.model.input_schema,
                bound_dataset=None
                if bound is None
                else {"rows": len(bound), "columns": list(bound.columns), "date": _latest_date(bound)},
            )
        return described


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


def _validator_for(model: StoredModel, max_records: int, cache: dict[str, RecordsValidator]) -> RecordsValidator:
    schema = model.input_schema
    key = json.dumps(schema, sort_keys=True)
    if key not in cache:
        # The purchase task keeps the seed's explicit request model (its name shows in the OpenAPI document).
        if schema == input_schema(PURCHASE):
            cache[key] = purchase_validator(max_records)
        else:
            cache[key] = RecordsValidator(record_model(schema, f"{model.name}_record"), rules_of(schema), max_records)
    return cache[key]


class Registry:
    def __init__(self, tags: list[str], max_records: int):
        self.entries: list[ModelEntry] = []
        validators: dict[str, RecordsValidator] = {}
        for tag in tags:
            name = tag.split(":", 1)[0]
            started = time.perf_counter()
            try:
                model = load_model(tag)
                # A model whose bound data no longer loads is as broken as one whose pipeline does not.
                _ = model.bound
                entry = ModelEntry(tag, name, "loaded", time.perf_counter() - started, model=model)
                entry.validator = _validator_for(model, max_records, validators)
            except bentoml.exceptions.NotFound:
                error = not_in_store(tag)
                logger.error("model %s failed to load: %s", tag, error)
                entry = ModelEntry(tag, name, "failed", time.perf_counter() - started, error=error)
            except Exception as exc:  # noqa: BLE001 - any failure to load is reported, never fatal
                logger.error("model %s failed to load: %s", tag, exc)
                error = f"{type(exc).__name__}: {exc}"
                entry = ModelEntry(tag, name, "failed", time.perf_counter() - started, error=error)
            self.entries.append(entry)

    def names(self) -> list[str]:
        return list(dict.fromkeys(entry.name for entry in self.entries))

    def get(self, name: str, version: str | None = None) -> ModelEntry:
        """The entry serving `name` (and `version`; None or "latest" means the configured default).

        Raises LookupError for a model or version that is not served, ModelUnavailable for one that failed to load.
        """
        candidates = [e for e in self.entries if e.name == name]
        if not candidates:
            raise LookupError(f"model {name!r} is not served; served models: {', '.join(self.names())}")
        if version in (None, "latest"):
            # `name` or `name:latest` in the configuration is the default; otherwise the first listed version.
            defaults = [e for e in candidates if e.requested in (name, f"{name}:latest")]
            entry = (defaults or candidates)[0]
        else:
            matching = [e for e in candidates if e.version == version or e.requested == f"{name}:{version}"]
            if not matching:
                served = ", ".join(str(e.version) for e in candidates if e.version)
                raise LookupError(f"version {version!r} of model {name!r} is not served; served versions: {served}")
            entry = matching[0]
        if entry.status != "loaded":
            raise ModelUnavailable(entry)
        return entry

    def describe(self) -> list[dict[str, Any]]:
        return [entry.describe() for entry in self.entries]

