"""Schemathesis over ``/openapi.json``: no operation answers 5xx, whatever the input.

Every operation gets ``MAILGATE_FUZZ_EXAMPLES`` inputs valid by the schema and as many
invalid ones (default 3 each, about a minute in all); the run stops starting operations after
``MAILGATE_FUZZ_SECONDS`` (default 120) and then fails naming those left out, so a cut-short
run never passes. The default run is derandomised (the same inputs every time);
``MAILGATE_FUZZ_RANDOM=1`` (as ``make fuzz`` sets) explores new inputs on every run. Requests
carry an owner token of the tenant ``acme``; path parameters name the tenant's existing
objects (its server, account, app, template, message, user, DKIM key, webhook), except in
DELETE operations, which keep generated ids so that nothing is deleted from under the rest of
the run. Every 5xx found is reported at the end, with the curl command that reproduces it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.fuzz.server import FuzzTarget, fuzz_target

#: Operations whose 5xx are known and being fixed in their own change: a run whose only
#: server errors are there is reported as an expected failure (XFAIL, naming them), not as a
#: pass. Remove an entry once its fix lands.
KNOWN_ELSEWHERE = frozenset(
    {
        "PATCH /api/v1/tenants/{tenant}/mail-servers/{server_id}",
        "PATCH /api/v1/tenants/{tenant}/email-accounts/{account_id}",
        "POST /api/v1/tenants/{tenant}/mail-servers/test",
        "POST /api/v1/tenants/{tenant}/mail-servers/{server_id}/test",
    }
)
EXAMPLES = int(os.environ.get("MAILGATE_FUZZ_EXAMPLES", "3"))
BUDGET = float(os.environ.get("MAILGATE_FUZZ_SECONDS", "120"))
RANDOM = os.environ.get("MAILGATE_FUZZ_RANDOM") == "1"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    with fuzz_target(Path(tmp_path_factory.mktemp("fuzz"))) as served:
        yield served


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, target: FuzzTarget) -> str:
    """Run one operation in one generation mode; the failure report, or '' when none."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    def run(case: schemathesis.Case) -> None:
        if case.path_parameters and case.method.upper() != "DELETE":
            for name in case.path_parameters:
                value = target.path_value(case.path, name)
                if value is not None:
                    case.path_parameters[name] = value
        response = case.call(base_url=target.base_url, headers=target.owner, timeout=60)
        assert response.status_code < 500, (
            f"{response.status_code} {case.method.upper()} {case.path} ({mode.value})\n"
            f"  {case.as_curl_command(headers=target.owner)}\n  {response.text[:500]}"
        )

    try:
        run()
    except AssertionError as exc:
        return str(exc)
    except Unsatisfiable:
        return ""
    return ""


def test_no_operation_answers_a_server_error(target: FuzzTarget) -> None:
    schema = schemathesis.openapi.from_url(f"{target.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50
    started = time.monotonic()
    failures: list[str] = []
    known: list[str] = []
    left_out: list[str] = []
    for operation in operations:
        if time.monotonic() - started > BUDGET:
            left_out.append(operation.label)
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            report = _fuzz(operation, mode, target)
            if report:
                (known if operation.label in KNOWN_ELSEWHERE else failures).append(report)
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures)
    assert not left_out, (
        f"{len(left_out)} operations were not reached within {BUDGET:.0f} s (raise "
        f"MAILGATE_FUZZ_SECONDS): {', '.join(left_out)}"
    )
    if known:
        pytest.xfail(f"{len(known)} known server errors:\n" + "\n".join(known))
