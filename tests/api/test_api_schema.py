"""schemathesis against the served OpenAPI document: generated requests to every read
endpoint, with a valid admin token, get no 5xx and answers that match the schema.

(schemathesis' pytest plugin does not run under pytest 9, so each operation's strategy
is driven by hypothesis here.)"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from ipbx.store import CallRecord
from tests.api.apiclient import Api

EXAMPLES = 40


def test_read_endpoints_conform_to_the_openapi_document(api: Api) -> None:
    api.store.save_call_records(
        [CallRecord("c-1", "1000", "1001", 1000.0, 1030.0, "answered", 1005.0)]
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.include(method="GET").get_all_operations()]
    assert {op.path for op in operations} >= {"/calls", "/calls/{call_id}", "/metrics"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)  # fmt: skip
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=api.headers())

        conforms()
