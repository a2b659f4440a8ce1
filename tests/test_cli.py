"""The command line, run in-process through ``latchkey.cli.main``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from latchkey.cli import main
from support import CHEAP_ENV


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_user_add_reads_one_line_without_its_newline(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--password-stdin takes one line; the trailing newline is not part of the password."""
    _stdin(monkeypatch, "s3cret pass\nignored second line\n")
    assert main(["user", "add", "alice", "--password-stdin", "--scope", "read  write"]) == 0
    assert "created user alice" in capsys.readouterr().out

    from latchkey.bootstrap import build
    from latchkey.core.passwords import PasswordHasher
    from latchkey.settings import Settings

    services = build(Settings(_env_file=None))  # type: ignore[call-arg]
    ok, _ = PasswordHasher().verify(_stored_hash(services), "s3cret pass")  # any parameters
    assert ok


def _stored_hash(services: object) -> str:
    import asyncio

    from latchkey.bootstrap import Container

    assert isinstance(services, Container)

    async def fetch() -> str:
        user = await services.store.user_by_name("alice")
        await services.close()
        assert user is not None
        assert user.scope == "read write"
        return user.password_hash

    return asyncio.run(fetch())


def test_user_add_twice_is_a_conflict(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second user with the same name (any case) is refused with one line, exit 2."""
    _stdin(monkeypatch, "password-one\n")
    assert main(["user", "add", "alice", "--password-stdin"]) == 0
    capsys.readouterr()
    _stdin(monkeypatch, "password-two\n")
    assert main(["user", "add", "ALICE", "--password-stdin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latchkey: ") and err.count("\n") == 1


def test_user_add_without_terminal_or_stdin_flag_fails_cleanly(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a terminal, the command asks for --password-stdin instead of hanging."""
    _stdin(monkeypatch, "")
    assert main(["user", "add", "bob"]) == 2
    assert "--password-stdin" in capsys.readouterr().err


def test_user_list_and_keys_list(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`user list` shows users; `keys list` shows the signing key's kid and algorithm."""
    _stdin(monkeypatch, "a long unusual passphrase\n")
    assert main(["user", "add", "carol", "--password-stdin"]) == 0
    capsys.readouterr()
    assert main(["user", "list"]) == 0
    assert "carol" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    assert "RS256" in out and "signing" in out
    assert (migrated / "secret.key").stat().st_mode & 0o777 == 0o600
    assert (migrated / "latchkey.db").stat().st_mode & 0o777 == 0o600
    assert migrated.stat().st_mode & 0o777 == 0o700


def test_migrate_is_idempotent(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`latchkey migrate` can run any number of times."""
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


MANAGEMENT = [
    ["user", "list"],
    ["user", "add", "zed", "--password-stdin"],
    ["user", "update", "zed", "--scope", "read"],
    ["user", "disable", "zed"],
    ["sessions", "list"],
    ["sessions", "revoke", "--user", "zed"],
    ["keys", "list"],
    ["keys", "rotate"],
    ["audit"],
    ["clients", "list"],
    ["clients", "add", "billing-api"],
    ["backup", "snapshot.lkb"],
]


@pytest.mark.parametrize("argv", MANAGEMENT, ids=" ".join)
def test_management_commands_create_nothing_where_there_is_no_database(
    cli_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    """In a directory without a database, a management command names the path it looked at
    and the fix, exit 2, and creates nothing: no data directory, database or secret."""
    _stdin(monkeypatch, "a long unusual passphrase\n")
    before = sorted(tmp_path.rglob("*"))
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"latchkey: no database at {cli_env.resolve() / 'latchkey.db'}: ")
    assert "LATCHKEY_DATA_DIR" in err and "`latchkey migrate`" in err
    assert sorted(tmp_path.rglob("*")) == before
    assert not cli_env.exists()


@pytest.mark.parametrize("argv", MANAGEMENT[:1] + MANAGEMENT[4:5] + MANAGEMENT[8:], ids=" ".join)
def test_only_migrate_makes_the_schema(
    cli_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A management command on a database without the current schema changes nothing: one
    line names the database and says to run `latchkey migrate`, exit 2; after it, the
    command works."""
    from latchkey.adapters.keyfiles import new_secret

    cli_env.mkdir()
    (cli_env / "latchkey.db").touch()  # an empty file, as an older latchkey left it
    (cli_env / "secret.key").write_text(new_secret())
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"latchkey: sqlite:///{cli_env.resolve() / 'latchkey.db'}: ")
    assert "run `latchkey migrate`" in err
    assert main(["migrate"]) == 0
    assert main(argv) == 0


def test_a_missing_secret_is_not_made_by_a_management_command(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The database is there but its secret key is not: a new secret would not unseal its
    signing keys. The command names the file and the settings, and makes none."""
    (migrated / "secret.key").unlink()
    assert main(["keys", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"latchkey: no secret key at {migrated.resolve() / 'secret.key'}: ")
    assert "LATCHKEY_SECRET_KEY" in err and err.count("\n") == 1
    assert not (migrated / "secret.key").exists()


def test_changing_commands_name_the_database_they_changed(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command that changes something says on stderr which database; reading ones
    do not."""
    database = f"latchkey: database sqlite:///{migrated.resolve() / 'latchkey.db'}\n"
    _stdin(monkeypatch, "a long unusual passphrase\n")
    for argv in (
        ["user", "add", "amy", "--password-stdin", "--scope", "read write"],
        ["user", "update", "amy", "--scope", "read"],
        ["sessions", "revoke", "--user", "amy"],
        ["keys", "rotate"],
        ["user", "disable", "amy"],
    ):
        assert main(argv) == 0, argv
        assert capsys.readouterr().err == database, argv
    for argv in (["user", "list"], ["keys", "list"], ["audit"], ["sessions", "list"]):
        assert main(argv) == 0, argv
        assert capsys.readouterr().err == "", argv


def test_a_database_that_cannot_be_used_is_one_line_without_its_password(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL without that database (or down): one line naming the database with its
    password masked, and why, for migrate and for the other commands alike."""
    from support import POSTGRES_URL, TEST_SECRET

    base = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0]
    url = base.replace("://postgres@", "://postgres:hunter2@") + "/latchkey_no_such_database"
    assert "hunter2" in url
    monkeypatch.setenv("LATCHKEY_DATABASE_URL", url)
    monkeypatch.setenv("LATCHKEY_SECRET_KEY", TEST_SECRET)
    for argv in (["migrate"], ["user", "list"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "hunter2" not in err
        assert err.startswith("latchkey: postgresql://postgres:***@")
        assert "latchkey_no_such_database" in err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LATCHKEY_ACCESS_TTL", "soon"),
        ("LATCHKEY_REFRESH_GRACE", "-1"),
        ("LATCHKEY_ISSUER", "not a url"),
        ("LATCHKEY_SIGNING_ALG", "HS256"),
        ("LATCHKEY_DATABASE_URL", "mysql://x"),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
) -> None:
    """A bad value stops the command with one line that names the variable."""
    monkeypatch.setenv(name, value)
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert name in err


def test_refresh_ttl_longer_than_session_is_refused(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An idle lifetime longer than the absolute one is a configuration error."""
    monkeypatch.setenv("LATCHKEY_REFRESH_TTL", "40d")
    assert main(["migrate"]) == 2
    assert "LATCHKEY_REFRESH_TTL" in capsys.readouterr().err


def test_unreadable_signing_key_file_is_one_line(
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A signing key file that is not a PEM private key stops start-up with one line."""
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    monkeypatch.setenv("LATCHKEY_SIGNING_KEY_FILE", str(bad))
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PEM" in err
    assert err.startswith(f"latchkey: LATCHKEY_SIGNING_KEY_FILE: {bad}: ")

    bad.unlink()
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err == f"latchkey: LATCHKEY_SIGNING_KEY_FILE: {bad}: No such file or directory\n"


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`latchkey keys list | head -0`: the reader is gone before the first line; the command
    ends without a traceback (BrokenPipeError handled as the Python docs advise)."""
    import os
    import subprocess
    import sys

    environment = {**os.environ, **CHEAP_ENV, "LATCHKEY_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "latchkey.cli", "keys", "list"]
    migrate = [sys.executable, "-m", "latchkey.cli", "migrate"]
    assert subprocess.run(migrate, env=environment, capture_output=True).returncode == 0
    assert subprocess.run(command, env=environment, capture_output=True).returncode == 0
    reader, writer = os.pipe()
    os.close(reader)  # nobody will read: every write to the pipe fails with EPIPE
    try:
        done = subprocess.run(command, env=environment, stdout=writer, stderr=subprocess.PIPE)
    finally:
        os.close(writer)
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    assert done.returncode == 141
