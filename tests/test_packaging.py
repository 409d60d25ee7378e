"""What a package index and an offline machine see: the licence, the links, the assets."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "heartwatch"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_licence_file_is_the_one_the_metadata_names() -> None:
    """``license = "MIT"`` and a LICENSE file with the MIT text, shipped in the wheel."""
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted" in text


def test_readme_links_work_on_a_package_index_page() -> None:
    """A package index shows README.md without the repository: every link is absolute."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links, "no links found: the pattern is wrong"
    relative = [link for link in links if not link.startswith(("https://", "http://", "#"))]
    assert relative == []
    urls = PYPROJECT["project"]["urls"]
    assert {"Homepage", "Documentation", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def test_the_docs_page_assets_are_in_the_package() -> None:
    """Each script and style ``/docs`` loads is a file under ``web/static`` that the wheel's
    package-data takes, beside swagger-ui's licence."""
    page = (PACKAGE / "web" / "static" / "swagger" / "docs.html").read_text()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert len(assets) == 4, assets  # the icon, the CSS, the bundle, init.js
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["heartwatch"]
    swagger = PACKAGE / "web" / "static" / "swagger"
    for asset in [*assets, "/static/swagger/LICENSE", "/static/swagger/NOTICE"]:
        relative = "web/static/" + asset.removeprefix("/static/")
        assert (PACKAGE / relative).is_file(), asset
        assert any(fnmatch.fnmatch(relative, glob) for glob in globs), relative
    assert "Apache License" in (swagger / "LICENSE").read_text()
    assert "sourceMappingURL" not in (swagger / "swagger-ui.css").read_text()


def test_the_history_page_assets_are_in_the_package() -> None:
    """Each script and style ``/history`` loads is a file under ``web/static`` that the
    wheel's package-data takes, uPlot's licence beside it; the page has no inline script or
    style (the dashboard's CSP would refuse them)."""
    page = (PACKAGE / "web" / "static" / "history.html").read_text()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert "/static/vendor/uplot/uPlot.iife.min.js" in assets, assets
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["heartwatch"]
    for asset in [*assets, "/static/vendor/uplot/LICENSE"]:
        relative = "web/static/" + asset.removeprefix("/static/")
        assert (PACKAGE / relative).is_file(), asset
        assert any(fnmatch.fnmatch(relative, glob) for glob in globs), relative
    assert "Leon Sorokin" in (PACKAGE / "web/static/vendor/uplot/LICENSE").read_text()
    assert not re.search(r"<style|\sstyle=|<script>|\son[a-z]+=", page)
