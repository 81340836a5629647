"""The loop's HTTP contracts in process (ids on every endpoint and in the log; feedback), the same tests as the
real-server tier in tests/test_loop.py."""

from tests.test_loop import (  # noqa: F401  (collected here against the in-process server fixture)
    test_every_endpoint_answers_and_logs_prediction_ids,
    test_feedback_counts_duplicates_and_corrections_and_names_bad_items,
)
