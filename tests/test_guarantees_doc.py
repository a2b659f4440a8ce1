"""docs/guarantees.md names, for every promise, tests that exist in the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUARANTEES = ROOT / "docs" / "guarantees.md"
# `tests/x.py::test_a`, then possibly `, ::test_b` naming more tests of the same file.
_NAMED = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)?)`((?:, `::\w+`)*)")


def named_tests(text: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for path, first, more in _NAMED.findall(text):
        names = [first[2:]] if first else [None]
        names += re.findall(r"`::(\w+)`", more)
        found += [(path, name) for name in names]
    return found


def test_every_promise_names_existing_tests() -> None:
    text = GUARANTEES.read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert len(sections) == 6, [s.splitlines()[0] for s in sections]
    for section in sections:
        assert named_tests(section), f"no test named for: {section.splitlines()[0]}"
    missing = []
    for path, name in named_tests(text):
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
        elif name is not None and not re.search(
            rf"^(?:async )?def {name}\(", source.read_text(), re.M
        ):
            missing.append(f"{path}::{name}")
    assert not missing, missing
