"""Every relative link in README.md and docs/ reaches a file, and its #anchor a heading."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.docs.markdown import ROOT, anchors, links, markdown_files, slug

pytestmark = pytest.mark.unit

EXTERNAL = ("http://", "https://", "mailto:")


def broken_links(page: Path) -> list[str]:
    problems = []
    for number, target in links(page.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif not dest.is_relative_to(ROOT):
            problems.append(f"{where}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text("utf-8")):
            problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_docs_exist_and_are_linked_from_the_readme() -> None:
    readme_targets = {t.partition("#")[0] for _, t in links((ROOT / "README.md").read_text())}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages, "docs/ holds the reference pages"
    assert pages - readme_targets == set(), "every docs page is reachable from the README"


def test_the_readme_is_a_front_page() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 400


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Python client (`llm_router_lib`)", "python-client-llm_router_lib"),
    ("Load balancing, shared state, health and failover",
     "load-balancing-shared-state-health-and-failover"),
    ("1. `a.py`, `B.c`: route once — **done**", "1-apy-bc-route-once--done"),
    ("[Link](x.md) text", "link-text"),
])
def test_anchors_are_made_the_way_github_makes_them(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_broken_link_and_a_broken_anchor_are_found(tmp_path: Path) -> None:
    page = ROOT / "docs" / "configuration.md"
    text = page.read_text(encoding="utf-8")
    assert "environment" in anchors(text)
    fake = tmp_path / "page.md"
    fake.write_text("# Title\n[a](#title) [b](#nope) [c](missing.md)\n```\n[d](x.md)\n```\n")
    assert [t for _, t in links(fake.read_text())] == ["#title", "#nope", "missing.md"]
