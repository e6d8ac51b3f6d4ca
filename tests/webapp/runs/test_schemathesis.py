"""Property-based API test: schemathesis generates valid and invalid requests for every operation of
the OpenAPI schema and sends them to the live test server as one user while another user's run
exists. No request may get a server error, every response must match what the schema documents,
and the other user's run must stay invisible (a 404 on every operation that names it)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.webapp.runs.conftest import TOY, launch, simulate_results
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_MODE = 10  # per operation and generation mode: 19 operations x 2 modes x 10 = 380 cases
CHECKS = [schemathesis.checks.not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
OTHER_USERS_RUN_NAME = "bob-private-run-3f9c"


@dataclass
class Tally:
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=dict)  # failure kind -> one line per failure
    leaks: list[str] = field(default_factory=list)

    def record(self, failures: list[Failure], case) -> None:
        request = f"{case.method} {case.formatted_path} query={case.query!r} body={_short(case.body)}"
        for failure in failures:
            line = f"{case.operation.label}: {failure.title}: {failure.message[:300]} <- {request}"
            self.failures.setdefault(type(failure).__name__, []).append(line)

    def summary(self) -> str:
        counts = ", ".join(f"{kind} {len(lines)}" for kind, lines in sorted(self.failures.items())) or "no failures"
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        return f"{self.cases} cases ({statuses}): {counts}; {len(self.leaks)} leaks"


def _short(body) -> str:
    try:
        text = json.dumps(body, default=str)
    except (TypeError, ValueError):
        text = repr(body)
    return text[:200]


def _strategies(operation, own: list[int], other: int):
    """Each generation mode with generated path parameters, plus the same with run ids that exist
    (our own runs and the other user's run); a launch also with a valid body."""
    parameters = {p.name for p in operation.path_parameters}
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        if "run_id" in parameters:
            strategies += [operation.as_strategy(generation_mode=mode, path_parameters={"run_id": run_id})
                           for run_id in (*own, other)]
    if operation.method.upper() == "POST" and operation.path == "/api/runs/":
        strategies.append(operation.as_strategy(body=TOY, media_type="application/json"))
    return st.one_of(strategies)


def test_no_server_errors_and_every_response_as_documented(live_server, alice, bob):
    own = [simulate_results(launch(alice, name="alice finished")).pk, launch(alice, name="alice queued").pk]
    other = launch(bob, name=OTHER_USERS_RUN_NAME)
    headers = {"Authorization": f"Token {Token.objects.create(user=alice).key}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    tally = Tally()

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):  # deletions last

        @settings(max_examples=2 * EXAMPLES_PER_MODE, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=_strategies(operation, own, other.pk))
        def send(case):
            tally.cases += 1
            response = case.call(headers=headers)
            tally.statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                tally.record(list(group.exceptions), case)
            except Failure as failure:
                tally.record([failure], case)
            if case.path_parameters and case.path_parameters.get("run_id") == other.pk and response.status_code != 404:
                tally.leaks.append(f"{case.operation.label} on the other user's run: {response.status_code}")
            if OTHER_USERS_RUN_NAME.encode() in response.content:
                tally.leaks.append(f"{case.operation.label} shows the other user's run")

        send()

    print(f"schemathesis: {tally.summary()}")
    assert tally.cases >= 300
    assert {200, 201, 204, 400, 404, 409} <= set(tally.statuses), tally.summary()  # the cases reach the code
    assert tally.failures == {}, tally.summary()
    assert tally.leaks == []
    other.refresh_from_db()
    assert other.status == RunStatus.QUEUED and Run.objects.filter(owner=bob).count() == 1
