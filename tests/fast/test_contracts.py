"""Seed contracts and the hostile-input table, in process (see conftest.py): the same test functions as the
real-server tier, collected here against the in-process `server` fixture."""

from tests.test_reliability import (  # noqa: F401
    test_client_request_ids_are_sanitized_before_the_log,
    test_hostile_input_gets_a_clear_4xx,
    test_unicode_is_data_not_an_error,
)
from tests.test_service import (  # noqa: F401
    test_batch_body_on_predict_says_where_it_belongs,
    test_big_batch_keeps_input_order,
    test_business_rule_names_the_offending_records,
    test_empty_records_is_422_on_records,
    test_field_errors_name_record_and_field,
    test_docs_describe_the_product_with_seed_examples,
    test_health_and_openapi,
    test_malformed_bodies_are_client_errors,
    test_models_endpoint_describes_every_model,
    test_predict_business_rule,
    test_predict_field_errors,
    test_predict_one_record,
    test_seed_batch_example_returns_three_predictions_in_order,
    test_seed_v1_example_predicts_from_bound_datasets,
    test_v1_ensemble_is_the_weighted_mean,
    test_v1_invalid_shared_inputs_fail_each_item_that_uses_them,
    test_v1_malformed_requests_are_422,
    test_v1_one_bad_item_does_not_fail_the_others,
)
