"""The documentation cannot go stale silently: the site (mkdocs.yml, docs/) builds with --strict,
so a link to a missing page or anchor fails `make test` naming it; every relative link of the
README (which is not part of the site) points to a file in the repository; every SUANLI_*
variable the code reads is in the configuration page."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def build(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
        cwd=config.parent, capture_output=True, text=True, timeout=240, env=env,
    )


def warnings_of(proc: subprocess.CompletedProcess[str]) -> str:
    lines = (proc.stdout + proc.stderr).splitlines()
    return "\n".join(line for line in lines if "WARNING" in line or "ERROR" in line or "Error" in line)


def test_the_site_builds_strictly_with_every_page(tmp_path: Path) -> None:
    out = tmp_path / "site"
    proc = build(ROOT / "mkdocs.yml", out)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{warnings_of(proc) or proc.stderr}"
    for page in sorted((ROOT / "docs").glob("*.md")):
        html = out / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert html.is_file(), f"docs/{page.name} was not built into {html.relative_to(out)}"
    # Nothing is fetched at view time: no fonts from Google, no scripts from a CDN.
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "fonts.googleapis.com" not in index and "fonts.gstatic.com" not in index
    assert not re.search(r"<script[^>]+src=\"https?://", index)
    # The search index is built, with the Chinese text in it.
    index_json = json.loads((out / "search" / "search_index.json").read_text(encoding="utf-8"))
    assert index_json["config"]["lang"] == ["en", "zh"]
    assert any("算力券" in doc["text"] for doc in index_json["docs"])


def test_a_broken_link_or_anchor_fails_the_build_and_is_named(tmp_path: Path) -> None:
    """The strictness is real: the same configuration refuses a page with a dead link."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    tour = tmp_path / "docs" / "tour.md"
    tour.write_text(tour.read_text(encoding="utf-8")
                    + "\n[gone](no-such-page.md) and [lost](scheduler.md#no-such-anchor)\n",
                    encoding="utf-8")
    proc = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0
    found = warnings_of(proc)
    assert "no-such-page.md" in found and "no-such-anchor" in found, found


def readme_links() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links in code blocks are not links
    return LINK.findall(text)


def test_every_relative_link_in_the_readme_points_to_a_file_in_the_repository() -> None:
    links = readme_links()
    assert len(links) >= 20, links  # the parser found the README's links (it has dozens)
    missing = []
    for target in links:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s), mailto: not files; #anchor: this file
        path = target.split("#", 1)[0]
        if path.startswith("/") or not (ROOT / path).exists():
            missing.append(target)
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_the_readme_link_check_catches_a_missing_file() -> None:
    links = LINK.findall("see [the page](docs/nope.md#x) and ![a picture](docs/img/none.png)")
    assert links == ["docs/nope.md#x", "docs/img/none.png"]
    assert not (ROOT / "docs/nope.md").exists()


def test_every_setting_the_code_reads_is_documented() -> None:
    names: set[str] = set()
    for path in (ROOT / "src" / "suanli").rglob("*.py"):
        names |= set(re.findall(r"[\"'](SUANLI_[A-Z0-9]+(?:_[A-Z0-9]+)*)[\"']", path.read_text("utf-8")))
    assert {"SUANLI_HOME", "SUANLI_DATABASE_URL", "SUANLI_QUEUE"} <= names  # the scan works
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    undocumented = sorted(n for n in names if f"`{n}`" not in page)
    assert not undocumented, f"docs/configuration.md does not name {undocumented}"
