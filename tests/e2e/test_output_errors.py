"""Output that cannot be written (a full disk) is not lost silently: the service's status and
``/metrics`` count it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from e2e.support import Pipeline, wait_until

pytestmark = pytest.mark.e2e

FULL = Path("/dev/full")
TALKER = "import time\nwhile True:\n    print('a line', flush=True)\n    time.sleep(0.05)\n"


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full")
def test_lost_output_is_counted_in_status_and_metrics(pipeline: Pipeline) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    pipeline.log_dir.mkdir(parents=True, exist_ok=True)
    (pipeline.log_dir / "talker.log").symlink_to(FULL)  # every write: ENOSPC
    pipeline.write_config([{"name": "talker", "command": [sys.executable, "-c", TALKER]}])
    daemon = pipeline.start_daemon()
    daemon.wait_running("talker")
    wait_until(lambda: daemon.service("talker")["output_write_errors"] >= 2, "lost writes")
    _status, _headers, body = daemon.raw("GET", "/metrics")
    lost = [
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "heartwatch_service_output_write_errors_total"
        and sample.labels == {"service": "talker"}
    ]
    assert lost and lost[0] >= 2
    assert daemon.terminate() == 0
