"""Helpers for the browser tests: the system's Chromium, watched pages, and a site (a real
daemon from ``e2e.support`` with three small services and a file under its ``[logs]`` root)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.support import Daemon, Pipeline, duration, scaled, wait_until

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
WORKER_SOURCE = Path(__file__).with_name("worker.py")
SERVICES = ("alpha", "beta", "sleepy")

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Watched:
    """A page and what it said: console errors, uncaught exceptions, JavaScript dialogs."""

    page: Any
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return self.page_errors + self.dialogs + self.console_errors


def watch(page: Any) -> Watched:
    watched = Watched(page)
    page.on("console", lambda m: m.type == "error" and watched.console_errors.append(m.text))
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return watched


@dataclass
class Site:
    """A daemon for the page: its pipeline, and the file under its ``[logs]`` root."""

    pipeline: Pipeline
    daemon: Daemon
    log_file: Path

    @property
    def url(self) -> str:
        return self.daemon.http_url + "/"


def services() -> list[dict[str, Any]]:
    """Two beating workers (``beta`` requires ``alpha``) and ``sleepy``, all quick to recover."""
    worker = [sys.executable, "bworker.py", "--interval", "0.1"]
    quick = {
        "heartbeat_timeout": duration(1.5),
        "startup_grace": duration(5.0),
        "stop_timeout": duration(0.5),
        "backoff_initial": duration(0.1),
        "healthy_after": duration(1.0),
        "max_restarts": 20,
    }
    return [
        {"name": "alpha", "command": worker, **quick},
        {"name": "beta", "command": worker, "requires": ["alpha"], **quick},
        {"name": "sleepy", "command": worker, **quick},
    ]


def open_url(url: str) -> Any:
    """A plain GET, never through a proxy (everything here is on 127.0.0.1)."""
    return _HTTP.open(url, timeout=scaled(10.0))


def get_json(daemon: Daemon, path: str, token: str | None = None) -> Any:
    """GET an API path, with a bearer token if given (``Daemon.request`` sends none)."""
    request = urllib.request.Request(daemon.http_url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with _HTTP.open(request, timeout=scaled(10.0)) as response:
        return json.load(response)


@contextlib.contextmanager
def running_site(folder: Path, server: dict[str, Any] | None = None) -> Iterator[Site]:
    """A daemon with every service running; at the end, nothing of it keeps running."""
    pipeline = Pipeline(folder)
    try:
        shutil.copy(WORKER_SOURCE, folder / "bworker.py")
        root = folder / "files"
        root.mkdir()
        log_file = root / "app.log"
        log_file.write_text("first line\n")
        pipeline.write_config(services(), server=server, logs={"roots": [str(root)]})
        daemon = pipeline.start_daemon()
        token = (server or {}).get("token")
        wait_until(
            lambda: all(
                s["state"] == "running" for s in get_json(daemon, "/api/v1/services", token)
            ),
            "every service running",
        )
        yield Site(pipeline, daemon, log_file)
    finally:
        leftovers = pipeline.close()
        print(pipeline.report())  # shown by pytest only when the test fails
        assert not leftovers, f"processes outlived the daemon: {leftovers}"
