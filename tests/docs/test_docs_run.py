"""The documentation is executed: every page, top to bottom, against its own service."""

from __future__ import annotations

from pathlib import Path

import pytest
from doc_harness import ROOT, added_users, assert_output_matches, line_pattern, pages, run_page

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(600)  # a page is many commands, each a process: slow on a loaded machine
@pytest.mark.parametrize("page", pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    """Each shell and Python block runs and each shown output appears, in the page's order."""
    run_page(page, tmp_path)


def test_no_page_needs_a_user_of_another_page() -> None:
    """A reader follows the README, then any one page: no two pages add the same user."""
    owners: dict[str, Path] = {}
    for page in pages():
        for name in added_users(page):
            assert name not in owners, f"{page.name} and {owners[name].name} both add {name}"
            owners[name] = page


def test_expected_output_stands_for_varying_values() -> None:
    """An ellipsis, an id, a timestamp and a Unix time in a shown output match any such."""
    assert line_pattern('  "refresh_token": "lkrt.…",').fullmatch('  "refresh_token": "lkrt.x-y",')
    assert line_pattern("session 905285c816fa84bcaa0866cec411a0c1 revoked").fullmatch(
        "session 0123456789abcdef0123456789abcdef revoked"
    )
    assert line_pattern('"exp": 1767225900,').fullmatch('"exp": 1800000000,')
    assert not line_pattern('"expires_in": 900,').fullmatch('"expires_in": 901,')
    assert_output_matches("a\nc …\n", "a\nb\nc d\n", "here")
    with pytest.raises(AssertionError, match="no line 'c'"):
        assert_output_matches("b\nc\n", "c\nb\n", "here")
