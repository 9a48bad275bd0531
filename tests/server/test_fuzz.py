"""Fuzz the OpenAPI schema with schemathesis (in-process ASGI calls, lifespan running): no input gets a 5xx.

(schemathesis' ``from_fixture`` lazy schema does not work with pytest 9, so each operation's hypothesis strategy
is driven by ``@given`` directly.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

OPERATIONS = [("POST", "/v1/translate", 80), ("GET", "/v1/models", 5), ("GET", "/health", 5),
              ("GET", "/ready", 5), ("GET", "/metrics", 5)]


@pytest.fixture(scope="module")
def api_schema(base_settings, translators):
    from schemathesis.python import asgi
    from vqnat_server.app import create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(base_settings, translators))
    yield schema
    asgi.shutdown_lifespans()  # runs the app's lifespan shutdown (closes the batchers)


def test_schema_lists_every_operation(api_schema):
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == {(method, path) for method, path, _ in OPERATIONS}


@pytest.mark.parametrize(("method", "path", "examples", "mode"), [
    *[(method, path, examples, GenerationMode.POSITIVE) for method, path, examples in OPERATIONS],
    ("POST", "/v1/translate", 80, GenerationMode.NEGATIVE),  # the only operation with inputs to break
])
def test_no_input_gets_a_server_error(api_schema, method, path, examples, mode):
    operation = api_schema[path][method]
    statuses = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        response = case.call_and_validate(checks=[not_a_server_error])
        statuses.append(response.status_code)

    check()
    assert statuses and all(status < 500 for status in statuses)
    if path == "/v1/translate" and mode == GenerationMode.POSITIVE:
        assert 200 in statuses  # the fuzzer got past the checks to the model, not only to the 4xx paths
