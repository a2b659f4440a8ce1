"""The backup file: one format for SQLite and PostgreSQL (described in docs/deployment.md,
"Backup and restore"), so that a backup of one restores into the other.

A gzip stream of JSON lines: a header (format, version, schema revision, the tables and their
columns with their kinds, checks of the secrets), one line per row, and an end line with the
row counts and an HMAC over every line before it. The HMAC is keyed from the secret key
(:class:`BackupKeys`): a file cut short or altered is refused, and so is a restore under
another secret key, under which the sealed signing keys and the refresh tokens would be
worthless. The tables and columns are whatever the database has (reflected), so a table or
column that a later migration adds is carried without a change here; store/backup.py runs the
transactions.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, select
from sqlalchemy.engine import Connection

from ..core.errors import LatchkeyError
from ..core.sealing import derive

__all__ = [
    "FORMAT",
    "VERSION",
    "BackupError",
    "BackupKeys",
    "Contents",
    "column_kind",
    "read_backup",
    "snapshot_tables",
    "write_backup",
]

FORMAT = "latchkey-backup"
VERSION = 1
SKIPPED_TABLES = frozenset({"alembic_version"})  # the target has its own, at its revision
_KINDS = {str: "text", int: "integer", float: "float", bytes: "bytes", bool: "boolean"}


class BackupError(LatchkeyError):
    """The backup cannot be written or restored; the description says why and what to do."""

    error = "backup_error"


@dataclass(frozen=True)
class BackupKeys:
    """What a backup is bound to: the secret key (it seals the signing keys) and the key of
    the refresh-token MAC. A restore needs both to be the same, or every session would end."""

    secret: bytes
    refresh: bytes

    def _mac_key(self) -> bytes:
        return derive(self.secret, b"backup")

    def secret_check(self) -> str:
        return _b64(hmac.digest(derive(self.secret, b"backup-check"), b"secret", "sha256"))

    def refresh_check(self) -> str:
        return _b64(hmac.digest(derive(self.refresh, b"backup-check"), b"refresh", "sha256"))

    def mac(self) -> hmac.HMAC:
        return hmac.new(self._mac_key(), digestmod="sha256")


@dataclass
class Contents:
    """What a backup holds: its schema revision, creation time and the rows per table."""

    revision: str | None
    created_at: str
    source: str
    columns: dict[str, list[tuple[str, str]]]  # table -> [(column, kind)]
    rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        counts = ", ".join(f"{table} {count}" for table, count in self.rows.items())
        return f"schema {self.revision}: {counts}"


def column_kind(python_type: type) -> str:
    """The kind a column is written as; :class:`BackupError` for a type not supported."""
    kind = _KINDS.get(python_type)
    if kind is None:
        raise BackupError(f"a column of type {python_type.__name__} cannot be backed up")
    return kind


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _encode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "bytes":
        return _b64(bytes(value))
    if kind == "float":
        return float(value)
    return value


def _decode(value: Any, kind: str) -> Any:
    """The value of a JSON row as the column takes it; ValueError when it is not of its kind."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if value is None or (kind == "text" and isinstance(value, str)):
        return value
    if kind == "bytes" and isinstance(value, str):
        return _unb64(value)
    if kind == "float" and number:
        return float(value)
    if (kind == "integer" and number and isinstance(value, int)) or (
        kind == "boolean" and isinstance(value, bool)
    ):
        return value
    raise ValueError(f"a {kind} value was expected")


# --- writing ---------------------------------------------------------------------------------


def snapshot_tables(connection: Connection) -> list[Table]:
    """Every table of the database but Alembic's, in dependency order (reflected)."""
    reflected = MetaData()
    reflected.reflect(connection)
    return [table for table in reflected.sorted_tables if table.name not in SKIPPED_TABLES]


def write_backup(
    connection: Connection, path: Path, keys: BackupKeys, *, revision: str | None, now: float
) -> Contents:
    """Write every row the ``connection`` sees (run it in one read transaction) to ``path``,
    owner-only (0600), atomically: the file appears complete or not at all."""
    tables = snapshot_tables(connection)
    contents = Contents(
        revision=revision,
        created_at=datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        source=connection.dialect.name,
        columns={
            table.name: [(column.name, column_kind(column.type.python_type)) for column in table.c]
            for table in tables
        },
    )
    partial = path.with_name(f".{path.name}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            mac = keys.mac()

            def line(document: Any) -> None:
                data = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
                mac.update(data + b"\n")
                out.write(data + b"\n")

            line(
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "created_at": contents.created_at,
                    "source": contents.source,
                    "schema": revision,
                    "secret_check": keys.secret_check(),
                    "refresh_check": keys.refresh_check(),
                    "tables": [
                        {"name": name, "columns": [list(column) for column in columns]}
                        for name, columns in contents.columns.items()
                    ],
                }
            )
            for table in tables:
                kinds = [kind for _, kind in contents.columns[table.name]]
                count = 0
                for row in connection.execution_options(yield_per=1000).execute(select(table)):
                    line([table.name, [_encode(v, k) for v, k in zip(row, kinds, strict=True)]])
                    count += 1
                contents.rows[table.name] = count
            out.write(
                json.dumps({"end": {"rows": contents.rows, "mac": _b64(mac.digest())}}).encode()
                + b"\n"
            )
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return contents


# --- reading ---------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[bytes]:
    try:
        with gzip.open(path, "rb") as stream:
            yield from stream
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except (OSError, EOFError) as exc:  # not gzip, or cut short inside the compressed stream
        raise BackupError(f"{path} is not a complete latchkey backup ({exc})") from None


def read_backup(path: Path, keys: BackupKeys) -> tuple[Contents, Iterator[tuple[str, list[Any]]]]:
    """Check the whole file (format, version, secrets, MAC, row counts), then return its
    contents and a fresh iterator over its decoded rows, in file order."""
    contents = _verify(path, keys)

    def rows() -> Iterator[tuple[str, list[Any]]]:
        lines = _lines(path)
        next(lines)  # the header, checked
        for raw in lines:
            document = json.loads(raw)
            if isinstance(document, dict):
                return  # the end, checked
            table, values = document
            kinds = [kind for _, kind in contents.columns[table]]
            yield table, [_decode(v, k) for v, k in zip(values, kinds, strict=True)]

    return contents, rows()


def _verify(path: Path, keys: BackupKeys) -> Contents:
    damaged = f"{path} is damaged or was altered"
    lines = _lines(path)
    mac = keys.mac()
    try:
        first = next(lines, b"")
        header = json.loads(first)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise BackupError(f"{path} is not a latchkey backup")
        if not isinstance(header.get("version"), int) or header["version"] > VERSION:
            raise BackupError(
                f"{path} has format version {header.get('version')}, newer than this latchkey "
                f"reads ({VERSION}): restore it with the version that made it, or a newer one"
            )
        if not hmac.compare_digest(str(header.get("secret_check")), keys.secret_check()):
            raise BackupError(
                "the backup was made under another LATCHKEY_SECRET_KEY: its signing keys would "
                "not unseal and every session would end. Restore with the secret key of the "
                "service that made it (for SQLite: the contents of DATA_DIR/secret.key)"
            )
        if not hmac.compare_digest(str(header.get("refresh_check")), keys.refresh_check()):
            raise BackupError(
                "the backup was made under another refresh-token key (LATCHKEY_REFRESH_SECRET): "
                "every refresh token would be refused. Restore with the same setting"
            )
        mac.update(first)
        columns = {
            entry["name"]: [(str(name), str(kind)) for name, kind in entry["columns"]]
            for entry in header["tables"]
        }
        contents = Contents(
            header.get("schema"), str(header["created_at"]), str(header["source"]), columns
        )
        counts = dict.fromkeys(columns, 0)
        for raw in lines:
            document = json.loads(raw)
            if isinstance(document, dict):
                end = document["end"]
                if not hmac.compare_digest(str(end["mac"]), _b64(mac.digest())):
                    raise BackupError(damaged)
                if end["rows"] != counts or next(lines, None) is not None:
                    raise BackupError(damaged)
                contents.rows = counts
                return contents
            mac.update(raw)
            table, values = document
            kinds = [kind for _, kind in columns[table]]
            for value, kind in zip(values, kinds, strict=True):  # as the restore will
                _decode(value, kind)
            counts[table] += 1
    except BackupError:
        raise
    except (ValueError, KeyError, TypeError, IndexError):
        raise BackupError(damaged) from None
    raise BackupError(f"{path} is cut short: it has no end (was the backup interrupted?)")
