"""The API against its own OpenAPI document: generated requests find no server error.

schemathesis reads ``/openapi.json`` from a running daemon and sends, for every operation,
requests built from the schema (and beyond it); every answer must be no 5xx, and must match
what the document says (status codes, content types, bodies).

Reproducible: hypothesis runs derandomized (its seed is derived from the test's code), with a
fixed number of examples, no example database and the operations in a fixed order, so every run
sends the same requests in the same order and passes or fails the same way on every machine; a
failure it found is kept below as a fixed case.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from e2e.support import Daemon, Pipeline, worker_command

pytestmark = pytest.mark.e2e

EXAMPLES = 12  # per operation and mode: some 600 requests in all, a few seconds
CROSS_CHECKED = ("/api/v1/history", "/api/v1/recoveries")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    folder: Path = tmp_path_factory.mktemp("openapi")
    pipeline = Pipeline(folder)
    root = folder / "applogs"
    root.mkdir()
    (root / "app.log").write_text("one\ntwo\n")
    pipeline.write_config(
        [
            {"name": "worker", "command": worker_command("--beat", "0.2")},
            {"name": "watched", "heartbeat_timeout": "1h"},
        ],
        logs={"roots": [str(root)]},
    )
    try:
        yield pipeline.start_daemon()
    finally:
        pipeline.close()


@pytest.fixture(scope="module")
def api_schema(daemon: Daemon) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{daemon.http_url}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_answers_every_generated_request_without_a_server_error(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    """No 5xx, and every answer as documented, for requests generated from (and against) the
    schema."""
    # In a fixed order: the daemon lists a route's methods from a set, whose order changes
    # with each process's hash seed; a POST that fails a service must not move around.
    operations = sorted(
        (result.ok() for result in api_schema.get_all_operations()),
        key=lambda operation: (operation.path, operation.method),
    )
    assert len(operations) > 15
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,  # the same examples on every run: it cannot pass by chance
            deadline=None,
            database=None,
            print_blob=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(timeout=10)

        # A window is checked across its parameters (since before until), which a schema
        # cannot say: a schema-valid one may be a 422 bad_range, and nothing else.
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            print_blob=True,
            suppress_health_check=list(HealthCheck),
        )
        def check_window(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                timeout=10, excluded_checks=[positive_data_acceptance]
            )
            if mode is GenerationMode.POSITIVE and response.status_code == 422:
                assert response.json()["code"] == "bad_range", response.text

        try:
            check_window() if operation.path.startswith(CROSS_CHECKED) else check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without inputs to break


# Numbers beyond what the store can hold, or no numbers at all: each is a 422 naming the
# parameter, never a 500. The first one answered 500 (OverflowError in SQLite).
OUT_OF_RANGE = [
    "/api/v1/events?before_id=-1561881130574851888152587145305915392",
    "/api/v1/events?before_id=1561881130574851888152587145305915392",
    "/api/v1/events?before_id=9223372036854775808",
    "/api/v1/events?since=1e400",
    "/api/v1/events?since=-1e400",
    "/api/v1/events?since=nan",
    "/api/v1/events?since=inf",
    "/api/v1/events?limit=99999999999999999999999",
    "/api/v1/series?since=1e308",
    "/api/v1/series?since=nan",
    "/api/v1/services/watched/series?since=-inf",
    "/api/v1/services/watched/series?since=1e300",
    "/api/v1/events?until=nan",
    "/api/v1/history/watched?since=1e400",
    "/api/v1/history/watched?until=-1",
    "/api/v1/history/watched/rates?points=99999999999999999999",
    "/api/v1/recoveries?until=inf",
    "/api/v1/recoveries?limit=0",
]


@pytest.mark.parametrize("path", OUT_OF_RANGE)
def test_numbers_out_of_range_are_refused_with_a_reason(daemon: Daemon, path: str) -> None:
    status, _headers, body = daemon.raw("GET", path)
    assert status == 422, body
    error = json.loads(body)
    assert error["code"] == "invalid_request"
    parameter = urllib.parse.urlsplit(path).query.partition("=")[0]
    assert error["message"].startswith(f"query.{parameter}:"), error


def test_numbers_in_range_still_answer(daemon: Daemon) -> None:
    for path in (
        "/api/v1/events?before_id=9223372036854775807&since=0&limit=1000",
        "/api/v1/events?before_id=1",
        "/api/v1/series?since=0",
        "/api/v1/services/watched/series?since=1700000000.5",
        "/api/v1/events?until=0&kind=exit&kind=transition",
        "/api/v1/history/watched?since=0&until=1",
        "/api/v1/history/watched/rates?window=30d&points=1",
        "/api/v1/recoveries?since=0&until=99999999999",
    ):
        status, _headers, body = daemon.raw("GET", path)
        assert status == 200, (path, body)
