"""Pure parts of the lifecycle: reference parsing, the settings that take references, bearer tokens."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from serving.web.auth import bearer_token, token_matches
from serving.web.startup import check_served
from settings import Settings
from training.store import parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("purchase@production", ("purchase@production", True, None, None, "purchase", "production")),
        ("purchase_gbm", ("purchase_gbm", False, "purchase_gbm", None, None, None)),
        ("purchase_gbm:abc123", ("purchase_gbm", False, "purchase_gbm", "abc123", None, None)),
        (" drive_stats@candidate ", ("drive_stats@candidate", True, None, None, "drive_stats", "candidate")),
    ],
)
def test_parse_ref(text, expected):
    ref = parse_ref(text)
    assert (ref.served_name, ref.is_alias, ref.name, ref.version, ref.task, ref.stage) == expected


@pytest.mark.parametrize("text", ["", "purchase@", "@production", "a b", "purchase@prod:1", "x:y:z", "../etc"])
def test_parse_ref_refuses_what_is_not_a_reference(text):
    with pytest.raises(ValueError, match="not a model reference"):
        parse_ref(text)


def test_start_up_takes_aliases_and_refuses_what_nothing_served_could_match():
    """settings.py only reads the environment; the start checks what it names (serving/web/startup.py)."""
    assert Settings().default_purchase_model == "purchase@production"
    check_served(Settings())
    check_served(Settings(served_models="purchase_gbm,drive_stats_a", default_purchase_model="purchase_gbm"))
    check_served(Settings(ab_weights="purchase@production=0.9,purchase@candidate=0.1"))
    with pytest.raises(ValueError, match="DEFAULT_PURCHASE_MODEL=purchase@production is not loaded"):
        check_served(Settings(served_models="purchase@candidate"))
    with pytest.raises(ValueError, match="SHADOW_MODELS: 'bad name' is not a model reference"):
        check_served(Settings(shadow_models="bad name"))
    with pytest.raises(ValueError, match="AB_WEIGHTS names purchase_lx"):
        check_served(Settings(served_models="purchase_gbm,purchase_lr", default_purchase_model="purchase_gbm",
                              ab_weights="purchase_gbm=0.9,purchase_lx=0.1"))


def test_tokens_are_secret_and_compared_whole():
    settings = Settings(admin_token="s3cret-admin", api_tokens="tok-a, tok-b")
    assert "s3cret" not in repr(settings) and "tok-a" not in str(settings.model_dump())
    accepted = settings.api_tokens
    assert token_matches("tok-b", accepted) and token_matches("tok-a", accepted)
    for given in (None, "", "tok", "tok-bb", "TOK-A", "tok-a "):
        assert not token_matches(given, accepted)
    assert not token_matches("anything", [])
    assert token_matches("s3cret-admin", [SecretStr("s3cret-admin")])
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("abc") is None and bearer_token(None) is None
