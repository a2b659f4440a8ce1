"""``latchkey check [--deploy]``: the configuration as ``serve`` reads it, against the rules
of :mod:`latchkey.checks`; and the same problems as warnings when ``serve`` starts."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from ..adapters.keyfiles import load_signing_key, parse_secret
from ..checks import Level, Listener, Problem, gather, is_deployment
from ..checks import run as run_rules
from ..core.errors import ConfigurationError
from ..settings import ENV_PREFIX, Settings

log = logging.getLogger("latchkey.check")


def listener_of(args: argparse.Namespace) -> Listener:
    return Listener(
        host=args.host,
        port=args.port,
        workers=args.workers,
        instances=getattr(args, "instances", 1),
    )


def problems_of(settings: Settings, listener: Listener, *, deploy: bool) -> list[Problem]:
    """What the rules find, after the checks ``serve`` makes at start (key material)."""
    found = [*_key_material(settings)]
    found += run_rules(settings, gather(settings, listener), deploy=deploy)
    return sorted(found, key=lambda problem: problem.level is not Level.ERROR)


def _key_material(settings: Settings) -> list[Problem]:
    """The secrets and key file ``serve`` reads at start, and the database it would make."""
    problems = []
    path = settings.sqlite_path
    if path is not None and not path.exists():
        problems.append(
            Problem(
                "database-missing",
                Level.WARNING,
                f"there is no database at {path.resolve()}: latchkey serve would start a new, "
                "empty one there, with a new secret key unless LATCHKEY_SECRET_KEY is set.",
                "if the service's database is elsewhere, set LATCHKEY_DATA_DIR (or "
                "LATCHKEY_DATABASE_URL) to it; for a new installation, nothing.",
            )
        )
    for name, value in (
        ("LATCHKEY_SECRET_KEY", settings.secret_key),
        ("LATCHKEY_REFRESH_SECRET", settings.refresh_secret),
    ):
        if value is not None:
            try:
                parse_secret(value.get_secret_value(), name)
            except ConfigurationError as exc:
                problems.append(
                    Problem(
                        "secret-invalid",
                        Level.ERROR,
                        f"{exc.description}.",
                        "generate one with: latchkey keys secret.",
                    )
                )
    if settings.signing_key_file is not None:
        try:
            load_signing_key(settings.signing_key_file)
        except ConfigurationError as exc:
            problems.append(
                Problem(
                    "signing-key-file",
                    Level.ERROR,
                    f"{exc.description}.",
                    "point LATCHKEY_SIGNING_KEY_FILE at a PEM private key readable by the "
                    "service (RSA, P-256 or Ed25519), or unset it.",
                )
            )
    return problems


def _settings_problems(error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if part]
        message = item["msg"].removeprefix("Value error, ")
        what = f"{ENV_PREFIX}{loc[0].upper()}: {message}" if loc else message
        problems.append(
            Problem(
                "setting-invalid",
                Level.ERROR,
                f"{what}.",
                "correct it in the environment or .env (README.md, Configuration).",
            )
        )
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = _settings_problems(exc)
    else:
        problems = problems_of(settings, listener_of(args), deploy=args.deploy)
    for problem in problems:
        print(problem.line())
    errors = sum(problem.level is Level.ERROR for problem in problems)
    warnings = len(problems) - errors
    summary = "no problems found" if not problems else f"{errors} error(s), {warnings} warning(s)"
    print(
        f"latchkey: {summary}{'' if args.deploy else ' (add --deploy for production rules)'}",
        file=sys.stderr,
    )
    return 1 if errors else 0


def log_problems(settings: Settings, listener: Listener) -> None:
    """``serve``'s start: every problem ``latchkey check`` would print, as a log line (the
    deploy rules too when the issuer or the listener is not this machine's loopback)."""
    deploy = is_deployment(settings, listener)
    for problem in problems_of(settings, listener, deploy=deploy):
        level = logging.ERROR if problem.level is Level.ERROR else logging.WARNING
        log.log(level, problem.line(), extra={"check": problem.id})
