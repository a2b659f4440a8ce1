"""``latchkey backup PATH`` and ``latchkey restore PATH`` (docs/deployment.md, "Backup and
restore"): one file for SQLite and PostgreSQL alike, so that a restore also moves a service
from one to the other."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..adapters.keyfiles import SECRET_FILE
from .common import CommandError, load_settings, run


def cmd_backup(args: argparse.Namespace) -> None:
    path = Path(args.path)
    contents = run(lambda c: c.backup(path))
    label = load_settings().database_label
    print(f"backup of {label} written to {path} (mode 0600): {contents.summary()}")


def cmd_restore(args: argparse.Namespace) -> None:
    path = Path(args.path)
    settings = load_settings()
    if settings.secret_key is None and not (settings.data_dir / SECRET_FILE).exists():
        # A new secret would be made here, under which the backup's keys do not unseal.
        raise CommandError(
            "a restore needs the secret key of the service that made the backup: set "
            "LATCHKEY_SECRET_KEY to it, or copy its DATA_DIR/secret.key to "
            f"{(settings.data_dir / SECRET_FILE).resolve()}"
        )
    database = settings.sqlite_path
    made = database is not None and not database.exists()
    try:
        contents = run(lambda c: c.restore(path), restore=True, changes=True)
    except BaseException:
        if made and database is not None:
            database.unlink(missing_ok=True)  # the empty file made for the restore
        raise
    print(
        f"restored {path} (made {contents.created_at} from {contents.source}) into "
        f"{settings.database_label}: {contents.summary()}"
    )
