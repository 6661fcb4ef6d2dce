"""schemathesis against the served OpenAPI document: generated requests to every
endpoint, reads and writes, with a valid admin token, get no 5xx and answers that match
the schema.

A request that fits the schema may still be refused with 422 for what JSON Schema
cannot say (a route naming a trunk that does not exist, a host that is not one), so
schemathesis' "valid data is accepted" check is left out; every other check runs.

(schemathesis' pytest plugin does not run under pytest 9, so each operation's strategy
is driven by hypothesis here.)"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from ipbx.store import CallRecord
from tests.support.apiclient import Api

EXAMPLES = 40


def test_every_endpoint_conforms_to_the_openapi_document(api: Api) -> None:
    api.store.save_call_records(
        [CallRecord("c-1", "1000", "1001", 1000.0, 1030.0, "answered", 1005.0)]
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("GET", "/calls"), ("GET", "/calls/{call_id}"), ("GET", "/metrics"),
        ("POST", "/calls"), ("POST", "/config/trunks"), ("DELETE", "/config/groups/{key}"),
    }  # fmt: skip
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)  # fmt: skip
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers=api.headers(), excluded_checks=[positive_data_acceptance]
            )

        conforms()
