"""``latchkey backup`` and ``latchkey restore``, run in-process on SQLite: the file, the move
to a new data directory, and every refusal with one line and nothing written."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from latchkey.cli import main
from support import TEST_SECRET


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def backup(
    migrated: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    """A backup of a database with one user, alice, of scope "read"."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a long unusual passphrase\n"))
    assert main(["user", "add", "alice", "--password-stdin", "--scope", "read"]) == 0
    capsys.readouterr()
    path = tmp_path / "snapshot.lkb"
    code, out, err = run(capsys, "backup", str(path))
    assert (code, err) == (0, ""), err
    assert out.startswith(f"backup of sqlite:///{migrated.resolve() / 'latchkey.db'} written to ")
    assert "users 1" in out and "signing_keys 1" in out
    assert path.stat().st_mode & 0o777 == 0o600
    return path


def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret_from: Path | None) -> Path:
    """Point the settings at a new data directory, with the old secret key copied there."""
    target = tmp_path / "moved"
    if secret_from is not None:
        target.mkdir(mode=0o700)
        shutil.copy(secret_from / "secret.key", target / "secret.key")
    monkeypatch.setenv("LATCHKEY_DATA_DIR", str(target))
    return target


def test_restore_into_a_new_data_directory(
    backup: Path,
    migrated: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = elsewhere(tmp_path, monkeypatch, secret_from=migrated)
    code, out, err = run(capsys, "restore", str(backup))
    assert code == 0, err
    assert err == f"latchkey: database sqlite:///{target.resolve() / 'latchkey.db'}\n"
    assert out.startswith(f"restored {backup} (made ") and "users 1" in out
    code, out, _ = run(capsys, "user", "list")
    assert code == 0 and out.splitlines()[1].split()[0] == "alice"
    assert out.splitlines()[1].split()[-1] == "read"
    code, out, _ = run(capsys, "keys", "list")  # the signing key unseals under the secret
    assert code == 0 and len(out.splitlines()) == 2


def test_a_second_restore_is_refused_and_changes_nothing(
    backup: Path, migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "restore", str(backup))  # into the database it came from
    assert code == 2 and err.count("\n") == 1
    assert "the database is not empty" in err
    code, out, _ = run(capsys, "user", "list")
    assert len(out.splitlines()) == 2


def test_restore_without_the_secret_key_makes_nothing(
    backup: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = elsewhere(tmp_path, monkeypatch, secret_from=None)
    code, out, err = run(capsys, "restore", str(backup))
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "LATCHKEY_SECRET_KEY" in err and str(target.resolve() / "secret.key") in err
    assert not target.exists()


def test_restore_under_another_secret_names_it_and_leaves_no_database(
    backup: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = elsewhere(tmp_path, monkeypatch, secret_from=None)
    monkeypatch.setenv("LATCHKEY_SECRET_KEY", TEST_SECRET)
    code, out, err = run(capsys, "restore", str(backup))
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "another LATCHKEY_SECRET_KEY" in err
    assert not (target / "latchkey.db").exists()


@pytest.mark.parametrize("damage", ["truncated", "altered", "not a backup"])
def test_a_damaged_file_is_refused_with_one_line(
    backup: Path,
    migrated: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    damage: str,
) -> None:
    data = gzip.decompress(backup.read_bytes())
    if damage == "truncated":
        damaged = gzip.compress(data[: len(data) // 2])
    elif damage == "altered":
        damaged = gzip.compress(data.replace(b'"alice"', b'"mallory"'))
    else:
        damaged = b"hello"
    bad = tmp_path / "bad.lkb"
    bad.write_bytes(damaged)
    target = elsewhere(tmp_path, monkeypatch, secret_from=migrated)
    code, out, err = run(capsys, "restore", str(bad))
    assert (code, out) == (2, "") and err.count("\n") == 1 and "Traceback" not in err
    assert str(bad) in err
    assert not (target / "latchkey.db").exists()
