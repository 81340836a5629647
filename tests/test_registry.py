"""The registry's reasons for a model it could not load, against the session's real store (in process)."""

from __future__ import annotations

import pytest

from serving.core.registry import ModelUnavailable, Registry


def test_a_missing_model_or_version_says_what_the_store_has(trained_store):
    tags = ["purchase_gmb:latest", "purchase_gbm:v0nosuch", "purchase_lr", "purchase_gmb:v1"]
    typo, version, loaded, typo_version = Registry(tags).entries
    assert typo.status == version.status == typo_version.status == "failed" and loaded.status == "loaded"
    assert typo_version.error == typo.error
    assert typo.error.startswith("no such model in the store; the store has: ")
    assert {"purchase_gbm", "purchase_lr", "drive_stats_a", "drive_stats_b"} <= set(typo.error.split(": ")[1].split(", "))
    assert version.error.startswith("no version v0nosuch of purchase_gbm in the store; it has: ")
    with pytest.raises(ModelUnavailable) as raised:
        Registry(tags[:1]).get("purchase_gmb")
    assert raised.value.why == f"purchase_gmb:latest: {typo.error}" and raised.value.status == 503
