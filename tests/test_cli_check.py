"""``latchkey check [--deploy]``, run in-process: the configuration as ``serve`` reads it,
one line per problem (level, id, what, fix), exit 1 on any error."""

from __future__ import annotations

from pathlib import Path

import pytest

from latchkey.cli import main
from support import TEST_SECRET


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_the_defaults_pass_and_create_nothing(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A laptop's configuration: no error. The database serve would make is a warning
    naming where it looked; check itself makes nothing."""
    code, lines, err = check(capsys)
    assert code == 0
    assert lines == [line for line in lines if line.startswith("warning database-missing: ")]
    assert str(cli_env.resolve() / "latchkey.db") in lines[0]
    assert err == "latchkey: 0 error(s), 1 warning(s) (add --deploy for production rules)\n"
    assert not cli_env.exists()


def test_an_http_issuer_fails_deploy_naming_the_issuer(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LATCHKEY_ISSUER", "http://auth.example.com")
    code, lines, _ = check(capsys)
    assert code == 0 and lines == []  # without --deploy: a laptop serves http
    code, lines, err = check(capsys, "--deploy")
    assert code == 1
    assert lines[0].startswith("error issuer-http: LATCHKEY_ISSUER is http://auth.example.com")
    assert all(line.split()[0] in ("error", "warning") and " Fix: " in line for line in lines)
    assert "error(s)" in err


def test_a_production_configuration_passes_deploy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path("/var/lib/latchkey-check-test")  # absolute, lasting, not there: not read
    for name, value in {
        "LATCHKEY_DATA_DIR": str(data),
        "LATCHKEY_DATABASE_URL": "postgresql://latchkey@127.0.0.1/latchkey",
        "LATCHKEY_SECRET_KEY": TEST_SECRET,
        "LATCHKEY_ISSUER": "https://auth.example.com",
        "LATCHKEY_KEY_ROTATION_INTERVAL": "90d",
        "LATCHKEY_REDIS_URL": "redis://127.0.0.1:6379/0",
    }.items():
        monkeypatch.setenv(name, value)
    code, lines, err = check(capsys, "--deploy", "--workers", "4", "--instances", "2")
    assert (code, lines) == (0, [])
    assert err == "latchkey: no problems found\n"


@pytest.mark.parametrize(
    ("env", "argv", "expected"),
    [
        ({"LATCHKEY_SECRET_KEY": "short"}, [], "error secret-invalid: LATCHKEY_SECRET_KEY: "),
        ({"LATCHKEY_SIGNING_KEY_FILE": "/nonexistent/key.pem"}, [], "error signing-key-file: "),
        ({"LATCHKEY_ACCESS_TTL": "soon"}, [], "error setting-invalid: LATCHKEY_ACCESS_TTL: "),
        ({}, ["--instances", "2"], "error sqlite-instances: 2 instances on SQLite"),
        ({}, ["--port", "9000"], "warning issuer-port: LATCHKEY_ISSUER is http://127.0.0.1:8000"),
    ],
)
def test_each_problem_is_one_line_with_its_id(
    migrated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    argv: list[str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, lines, err = check(capsys, *argv)
    assert [line for line in lines if line.startswith(expected)], lines
    assert code == (1 if expected.startswith("error") else 0)
    assert "Traceback" not in err and err.count("\n") == 1


def test_secret_files_others_can_read_are_errors_under_deploy(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (migrated / "secret.key").chmod(0o644)
    code, lines, _ = check(capsys, "--deploy")
    assert code == 1
    assert any(
        line.startswith(f"error secret-readable: {migrated / 'secret.key'} can be read")
        for line in lines
    ), lines
