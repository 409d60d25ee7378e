"""The API against its own OpenAPI document: generated requests find no server error.

schemathesis reads ``/openapi.json`` from a running daemon and sends, for every operation,
requests built from the schema (and beyond it); every answer must be no 5xx, and must match
what the document says (status codes, content types, bodies).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from e2e.support import Pipeline, worker_command

pytestmark = pytest.mark.e2e

EXAMPLES = 12  # per operation and mode: some 600 requests in all, a few seconds


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
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
    daemon = pipeline.start_daemon()
    try:
        yield schemathesis.openapi.from_url(f"{daemon.http_url}/openapi.json")
    finally:
        pipeline.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_answers_every_generated_request_without_a_server_error(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    """No 5xx, and every answer as documented, for requests generated from (and against) the
    schema."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 15
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(timeout=10)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without inputs to break
