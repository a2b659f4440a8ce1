"""``latchkey clients add|list|remove``, in-process through ``latchkey.cli.main`` on SQLite:
the secret is printed once, stored only as a hash, works at /oauth/introspect until the
client is removed, and appears in no other output."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from latchkey.settings import Settings
from latchkey.web import create_app
from support import Cli

PASSWORD = "correct horse battery staple"


def add_client(cli: Cli, name: str) -> tuple[str, str]:
    """``clients add NAME``: the id and the secret it printed, once."""
    code, out, err = cli("clients", "add", name)
    assert code == 0, err
    match = re.fullmatch(
        r"client_id: ([0-9a-f]{32})\nclient_secret: (lkcs\.[A-Za-z0-9_-]{43})\n", out
    )
    assert match, out
    assert "not shown again" in err
    return match[1], match[2]


def introspect_with(client_id: str, secret: str) -> tuple[int, dict[str, Any]]:
    """Log alice in and introspect her access token with these credentials, through the app
    built from the same environment as the CLI."""

    async def run() -> tuple[int, dict[str, Any]]:
        app = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                login = await c.post(
                    "/auth/login", json={"username": "alice", "password": PASSWORD}
                )
                token = login.json()["access_token"]
                response = await c.post(
                    "/oauth/introspect", data={"token": token}, auth=(client_id, secret)
                )
                return response.status_code, response.json()

    return asyncio.run(run())


def test_clients_add_list_remove(cli: Cli, tmp_path: Path) -> None:
    """A registered client introspects with the printed secret; the list shows it without
    the secret; the database holds only its SHA-256; once removed, the secret is refused."""
    cli.ok("user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert cli.ok("clients", "list").split() == ["CLIENT", "ID", "CREATED", "NAME"]

    client_id, secret = add_client(cli, "billing-api")
    other_id, other_secret = add_client(cli, "inventory api")
    assert other_id != client_id and other_secret != secret

    listing = cli.ok("clients", "list")
    rows = [line.split(None, 3) for line in listing.splitlines()[1:]]
    assert [(row[0], row[3]) for row in rows] == [
        (client_id, "billing-api"),
        (other_id, "inventory api"),
    ]
    assert secret not in listing and other_secret not in listing

    database = (tmp_path / "data" / "latchkey.db").read_bytes()
    assert secret.encode() not in database
    assert hashlib.sha256(secret.encode()).digest() in database

    status, answer = introspect_with(client_id, secret)
    assert status == 200
    assert answer["active"] is True and answer["username"] == "alice"
    assert introspect_with(client_id, other_secret)[0] == 401

    assert cli.ok("clients", "remove", client_id) == f"removed client {client_id}\n"
    status, answer = introspect_with(client_id, secret)
    assert (status, answer["error"]) == (401, "invalid_client")
    assert introspect_with(other_id, other_secret)[0] == 200
    assert "No client with this id" in cli.fails("clients", "remove", client_id)

    audit = cli.ok("audit")
    assert "client_added" in audit and f"client {client_id}" in audit
    assert "client_removed" in audit
    assert secret not in audit


@pytest.mark.parametrize("name", ["", "   ", "tab\tname", "x" * 256])
def test_clients_add_refuses_bad_names(cli: Cli, name: str) -> None:
    """A name must be 1 to 255 printable characters; nothing is registered otherwise."""
    assert "client name" in cli.fails("clients", "add", name)
    assert len(cli.ok("clients", "list").splitlines()) == 1


@pytest.mark.parametrize("client_id", ["0" * 32, "not-an-id", "F" * 32])
def test_clients_remove_unknown(cli: Cli, client_id: str) -> None:
    """Removing an id that names no client says so and exits 2."""
    cli.fails("clients", "remove", client_id)


def test_clients_help(cli: Cli) -> None:
    """``clients --help`` names its three actions."""
    with pytest.raises(SystemExit) as exited:
        cli("clients", "--help")
    assert exited.value.code == 0
    out = cli.capsys.readouterr().out
    for action in ("add", "list", "remove"):
        assert action in out
