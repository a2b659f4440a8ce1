"""``latchkey keys rotate`` and ``latchkey keys list``, run in-process (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from latchkey.cli import main


def keys(capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, str]]:
    """``keys list`` as {kid: (alg, state)}, after checking its header."""
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "KID",
        "ALG",
        "STATE",
        "CREATED",
        "ACTIVATES",
        "RETIRES",
        "DROPPED",
        "AFTER",
    ]
    return {kid: (alg, state) for kid, alg, state, *_ in (row.split() for row in rows)}


def test_rotate_publishes_a_pending_key_and_list_shows_states(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`keys rotate` adds a pending key that signs after LATCHKEY_KEY_PREPUBLISH; `keys list`
    shows the current key signing (with its planned retirement) and the new one pending."""
    (first,) = keys(capsys)
    assert main(["keys", "rotate"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("new key ") and "(RS256): published now, signs from " in lines[0]
    assert lines[0].endswith("(in 600 s)")
    new = lines[0].split()[2]
    assert lines[1].startswith(f"key {first}: signs until ")
    assert keys(capsys) == {first: ("RS256", "signing"), new: ("RS256", "pending")}

    assert main(["keys", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(first))
    assert row[len(first) :].count("Z") == 4  # created, activates, retires, dropped after


def test_rotate_immediately_signs_now_and_the_old_key_retires(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--immediately`: the new key, of the configured algorithm, signs at once; the old one
    is retiring (still published)."""
    (first,) = keys(capsys)
    monkeypatch.setenv("LATCHKEY_SIGNING_ALG", "ES256")
    assert main(["keys", "rotate", "--immediately"]) == 0
    out = capsys.readouterr().out
    new = out.split()[2]
    assert f"new key {new} (ES256): published now, signs now" in out
    assert keys(capsys) == {first: ("RS256", "retiring"), new: ("ES256", "signing")}


def test_drop_previous_withdraws_the_other_keys(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--immediately --drop-previous` withdraws every other key; without `--immediately`
    it is refused with one line."""
    (first,) = keys(capsys)
    assert main(["keys", "rotate", "--drop-previous"]) == 2
    assert capsys.readouterr().err == (
        "latchkey: --drop-previous needs --immediately (the new key must sign now)\n"
    )
    assert main(["keys", "rotate"]) == 0
    pending = capsys.readouterr().out.split()[2]
    assert main(["keys", "rotate", "--immediately", "--drop-previous"]) == 0
    out = capsys.readouterr().out
    new = out.split()[2]
    assert f"key {first}: withdrawn now" in out and f"key {pending}: withdrawn now" in out
    assert keys(capsys) == {
        first: ("RS256", "withdrawn"),
        pending: ("RS256", "withdrawn"),
        new: ("RS256", "signing"),
    }


def test_keys_rotate_help_names_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    """`keys rotate --help` documents both options."""
    with pytest.raises(SystemExit) as exit_:
        main(["keys", "rotate", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--immediately" in out and "--drop-previous" in out


def test_rotation_interval_shorter_than_prepublication_is_refused(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An automatic rotation interval that would supersede each key before it ever signs
    stops the command with one line naming the variable."""
    monkeypatch.setenv("LATCHKEY_KEY_ROTATION_INTERVAL", "5m")
    assert main(["keys", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LATCHKEY_KEY_ROTATION_INTERVAL" in err
    monkeypatch.setenv("LATCHKEY_KEY_PREPUBLISH", "0")
    assert main(["keys", "list"]) == 0
