"""Bad configuration stops ``latchkey serve`` at once with one clear line, no traceback."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"LATCHKEY_ACCESS_TTL": "abc"}, "LATCHKEY_ACCESS_TTL"),
        ({"LATCHKEY_ACCESS_TTL": "0"}, "LATCHKEY_ACCESS_TTL"),
        ({"LATCHKEY_REFRESH_TTL": "40d"}, "LATCHKEY_REFRESH_TTL"),
        ({"LATCHKEY_CORS_ORIGINS": "*"}, "LATCHKEY_CORS_ORIGINS"),
        ({"LATCHKEY_CORS_ORIGINS": "https://app.example, null"}, "LATCHKEY_CORS_ORIGINS"),
        ({"LATCHKEY_CORS_ORIGINS": "https://app.example/"}, "LATCHKEY_CORS_ORIGINS"),
    ],
    ids=[
        "not-a-duration",
        "below-minimum",
        "refresh-outlives-session",
        "cors-wildcard",
        "cors-null",
        "cors-path",
    ],
)
def test_bad_setting_stops_serve_with_one_line(
    processes, settings: dict[str, str], variable: str
) -> None:
    """serve exits non-zero before binding, printing one stderr line that names the variable."""
    data_dir = processes.workdir / "data"
    result = processes.cli(
        data_dir, "serve", "--host", "127.0.0.1", "--port", "0", timeout=30, **settings
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("latchkey: ")
    assert variable in lines[0]
    assert result.stdout == ""
    assert not data_dir.exists()  # nothing was created before the settings were checked


def test_serve_logs_what_latchkey_check_finds(processes) -> None:
    """An issuer on another port than the one served: serve starts, and logs the warning
    `latchkey check` prints, with its id."""
    data_dir = processes.workdir / "data"
    server = processes.start_latchkey(data_dir, issuer_port=1)
    server.stop()
    output = server.output()
    assert "issuer-port" in output and "LATCHKEY_ISSUER is http://127.0.0.1:1" in output, output
    check = processes.cli(
        data_dir, "check", "--port", str(server.port), LATCHKEY_ISSUER=server.env["LATCHKEY_ISSUER"]
    )
    assert check.returncode == 0 and check.stdout.startswith("warning issuer-port: "), check
