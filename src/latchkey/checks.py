"""``latchkey check [--deploy]``: rules over the settings that find a configuration that works
on a laptop but fails, or is unsafe, where it is deployed.

Each rule is a pure function of the :class:`~latchkey.settings.Settings` and of a few
:class:`Facts` gathered beforehand (how the service is served, file modes, the environment),
and yields :class:`Problem` s: an id, what is wrong, and the fix. :data:`BASIC` rules apply
everywhere; :data:`DEPLOY` rules only where the service is meant for production. ``latchkey
check`` prints one line per problem and exits 1 on any error; ``latchkey serve`` logs the same
problems as warnings when it starts (docs/deployment.md, "Checking a configuration").
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from .adapters.keyfiles import SECRET_FILE
from .settings import Settings, split_host_port

__all__ = ["BASIC", "DEPLOY", "Facts", "Level", "Listener", "Problem", "gather", "run"]

# OWASP Password Storage Cheat Sheet: Argon2id with at least 19 MiB and 2 iterations.
_ARGON2_MIN_MEMORY_KIB = 19 * 1024
# Verifier(max_lifetime=3600) by default: a longer-lived token is refused by every guard.
_VERIFIER_MAX_LIFETIME = 3600
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
_EMPTIED_AT_BOOT = ("/tmp", "/run", "/dev/shm")  # noqa: S108 - tmpfs on most systems


class Level(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One finding: a stable ``id`` (to search the docs for), what is wrong, and the fix."""

    id: str
    level: Level
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.level.value} {self.id}: {self.message} Fix: {self.fix}"


@dataclass(frozen=True)
class Listener:
    """Where and how ``latchkey serve`` runs: its ``--host``, ``--port`` and ``--workers``,
    and how many such machines (instances) share the database."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    instances: int = 1

    @property
    def processes(self) -> int:
        return self.workers * self.instances


@dataclass(frozen=True)
class Facts:
    """What the rules know beyond the settings, gathered by :func:`gather`."""

    listener: Listener
    exposed: tuple[Path, ...] = ()  # files and directories with secrets that others can read
    forwarded_allow_ips: str = "127.0.0.1,::1"  # uvicorn's FORWARDED_ALLOW_IPS


def gather(
    settings: Settings,
    listener: Listener,
    *,
    environ: Mapping[str, str] | None = None,
    env_file: Path = Path(".env"),
) -> Facts:
    """Look at the files and the environment the settings point to (no network, no database)."""
    environ = os.environ if environ is None else environ
    secret_paths: list[Path] = [env_file]
    if settings.is_sqlite:
        secret_paths += [settings.data_dir, settings.data_dir / SECRET_FILE]
        if settings.sqlite_path is not None:
            secret_paths.append(settings.sqlite_path)
    elif settings.secret_key is None:
        secret_paths.append(settings.data_dir / SECRET_FILE)
    if settings.signing_key_file is not None:
        secret_paths.append(settings.signing_key_file)
    return Facts(
        listener=listener,
        exposed=tuple(path for path in secret_paths if _readable_by_others(path)),
        forwarded_allow_ips=environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
    )


def _readable_by_others(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # missing: created owner-only when needed
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: only this machine can connect."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Rule = Callable[[Settings, Facts], Iterable[Problem]]


# --- rules for every configuration -----------------------------------------------------------


def _issuer_matches_listener(settings: Settings, facts: Facts) -> Iterator[Problem]:
    """The default issuer is this machine's own URL: served elsewhere, nobody reaches it."""
    issuer = urlsplit(settings.issuer)
    if not is_loopback(issuer.hostname or ""):
        return  # a public name: a proxy may well serve it on another port
    port = issuer.port or (443 if issuer.scheme == "https" else 80)
    listener = facts.listener
    if not is_loopback(listener.host):
        yield Problem(
            "issuer-loopback",
            Level.WARNING,
            f"LATCHKEY_ISSUER is {settings.issuer}, but the service listens on "
            f"{listener.host}: clients on other machines reach it under another URL, and the "
            "tokens' iss and every metadata URL name this machine's loopback.",
            "set LATCHKEY_ISSUER to the URL clients use, e.g. https://auth.example.com.",
        )
    elif port != listener.port:
        yield Problem(
            "issuer-port",
            Level.WARNING,
            f"LATCHKEY_ISSUER is {settings.issuer}, but the service listens on port "
            f"{listener.port}: the tokens' iss and every metadata URL name a port nobody serves.",
            f"set LATCHKEY_ISSUER=http://{listener.host}:{listener.port} (or the URL of the "
            "proxy in front).",
        )


def _access_ttl(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if settings.access_ttl > _VERIFIER_MAX_LIFETIME:
        yield Problem(
            "access-ttl-long",
            Level.WARNING,
            f"LATCHKEY_ACCESS_TTL is {settings.access_ttl} s: latchkey.Verifier refuses tokens "
            f"that live longer than its max_lifetime, {_VERIFIER_MAX_LIFETIME} s by default.",
            "shorten LATCHKEY_ACCESS_TTL, or build every API's Verifier with "
            f"max_lifetime={settings.access_ttl}.",
        )


def _sqlite_instances(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if settings.is_sqlite and facts.listener.instances > 1:
        yield Problem(
            "sqlite-instances",
            Level.ERROR,
            f"{facts.listener.instances} instances on SQLite: each machine would have its own "
            "users, sessions and keys.",
            "use PostgreSQL (LATCHKEY_DATABASE_URL) for more than one machine; "
            "docs/deployment.md says how to move with latchkey backup and restore.",
        )


def _redis_instances(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if settings.redis_url is None and facts.listener.processes > 1:
        yield Problem(
            "no-redis",
            Level.WARNING,
            f"{facts.listener.processes} processes without LATCHKEY_REDIS_URL: each counts "
            "failed logins on its own (a guesser gets that many times the limits), and your "
            "APIs cannot follow revocations (RedisDenyList).",
            "set LATCHKEY_REDIS_URL=redis://HOST:6379/0.",
        )


def _forwarded_any(settings: Settings, facts: Facts) -> Iterator[Problem]:
    trusted = {item.strip() for item in facts.forwarded_allow_ips.split(",")}
    if "*" in trusted and not is_loopback(facts.listener.host):
        yield Problem(
            "forwarded-any",
            Level.ERROR,
            f"FORWARDED_ALLOW_IPS=* while listening on {facts.listener.host}: any client that "
            "reaches the port can claim any address (X-Forwarded-For), which defeats the "
            "per-address login limit and falsifies the audit trail.",
            "set FORWARDED_ALLOW_IPS to the proxy's address(es).",
        )


# --- rules for a deployment ------------------------------------------------------------------


def _https_issuer(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if urlsplit(settings.issuer).scheme != "https":
        yield Problem(
            "issuer-http",
            Level.ERROR,
            f"LATCHKEY_ISSUER is {settings.issuer}: tokens and refresh tokens would cross the "
            "network in clear, and browsers keep the Secure refresh cookie only over HTTPS.",
            "serve behind a TLS proxy (docs/deployment.md) and set "
            "LATCHKEY_ISSUER=https://<public host>.",
        )


def _plain_public_listener(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if not is_loopback(facts.listener.host):
        yield Problem(
            "listener-public",
            Level.WARNING,
            f"latchkey serve listens on {facts.listener.host}: it speaks plain HTTP, so "
            "clients that reach the port directly send tokens in clear.",
            "listen on 127.0.0.1 behind a TLS proxy, or firewall the port to the proxy.",
        )


def _public_management(settings: Settings, facts: Facts) -> Iterator[Problem]:
    address = split_host_port(settings.management_addr) if settings.management_addr else None
    if address is not None and not is_loopback(address[0]):
        yield Problem(
            "management-public",
            Level.WARNING,
            f"LATCHKEY_MANAGEMENT_ADDR is {settings.management_addr}: /metrics and /readyz "
            "answer anyone who reaches that port, without authentication.",
            "keep it on 127.0.0.1 (Prometheus on the same machine), or firewall the port to "
            "your monitoring hosts.",
        )


def _http_origins(settings: Settings, facts: Facts) -> Iterator[Problem]:
    plain = [
        origin
        for origin in settings.cors_origins
        if origin.startswith("http://") and not is_loopback(urlsplit(origin).hostname or "")
    ]
    if plain:
        yield Problem(
            "cors-http",
            Level.WARNING,
            f"LATCHKEY_CORS_ORIGINS lists plain-HTTP origins ({', '.join(plain)}): their pages "
            "can be altered on the way, and browsers do not send them the Secure cookie.",
            "list only https:// origins.",
        )


def _exposed_files(settings: Settings, facts: Facts) -> Iterator[Problem]:
    for path in facts.exposed:
        yield Problem(
            "secret-readable",
            Level.ERROR,
            f"{path} can be read by other users of this machine: it holds secrets (the secret "
            "key, password hashes, sealed signing keys or settings).",
            f"chmod go= {path} (owner only), and run the service as its own user.",
        )


def _data_dir(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if not settings.is_sqlite:
        return  # PostgreSQL: nothing lives there (the secret key is a setting)
    directory = settings.data_dir
    if not directory.is_absolute():
        yield Problem(
            "data-dir-relative",
            Level.WARNING,
            f"LATCHKEY_DATA_DIR is the relative path {directory}: started from another "
            "directory, the service or a command uses another, empty database and secret.",
            "set LATCHKEY_DATA_DIR to an absolute path, e.g. /var/lib/latchkey.",
        )
    elif any(directory.resolve().is_relative_to(place) for place in _EMPTIED_AT_BOOT):
        yield Problem(
            "data-dir-temporary",
            Level.ERROR,
            f"LATCHKEY_DATA_DIR is {directory}: that place may be emptied at the next boot.",
            "set LATCHKEY_DATA_DIR to a lasting place, e.g. /var/lib/latchkey.",
        )


def _key_rotation(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if settings.key_rotation_interval == 0:
        yield Problem(
            "key-rotation-off",
            Level.WARNING,
            "LATCHKEY_KEY_ROTATION_INTERVAL is 0: the signing key never changes unless someone "
            "runs latchkey keys rotate.",
            "set LATCHKEY_KEY_ROTATION_INTERVAL=90d, or rotate by hand on a schedule "
            "(docs/keys.md).",
        )


def _argon2(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if settings.argon2_memory_kib < _ARGON2_MIN_MEMORY_KIB or settings.argon2_time_cost < 2:
        yield Problem(
            "argon2-weak",
            Level.WARNING,
            f"Argon2id with {settings.argon2_memory_kib} KiB and {settings.argon2_time_cost} "
            "passes is below OWASP's minimum (19 MiB, 2 passes): stolen hashes are cheap to "
            "guess.",
            "raise LATCHKEY_ARGON2_MEMORY_KIB and LATCHKEY_ARGON2_TIME_COST (defaults 65536, "
            "3); passwords are rehashed at the next login.",
        )


def _plaintext_links(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if settings.redis_url is not None and settings.redis_url.startswith("redis://"):
        host = urlsplit(settings.redis_url).hostname or ""
        if not is_loopback(host):
            yield Problem(
                "redis-plaintext",
                Level.WARNING,
                f"LATCHKEY_REDIS_URL reaches {host} without TLS: revocations and throttle "
                "counters cross the network in clear.",
                "use rediss:// (TLS), or keep Redis on a private network.",
            )
    if not settings.is_sqlite:
        parts = urlsplit(settings.database_url)
        if not is_loopback(parts.hostname or "") and "ssl" not in parts.query:
            yield Problem(
                "database-plaintext",
                Level.WARNING,
                f"LATCHKEY_DATABASE_URL reaches {parts.hostname} without ssl=: password "
                "hashes and sealed keys cross the network in clear.",
                "add ?ssl=require (or verify-full) to the URL, or keep the database on a "
                "private network.",
            )


def _debug_logs(settings: Settings, facts: Facts) -> Iterator[Problem]:
    if settings.log_level == "debug":
        yield Problem(
            "log-debug",
            Level.WARNING,
            "LATCHKEY_LOG_LEVEL is debug: every refresh is logged.",
            "use info.",
        )


BASIC: tuple[Rule, ...] = (
    _issuer_matches_listener,
    _access_ttl,
    _sqlite_instances,
    _redis_instances,
    _forwarded_any,
)
DEPLOY: tuple[Rule, ...] = (
    _https_issuer,
    _plain_public_listener,
    _public_management,
    _http_origins,
    _exposed_files,
    _data_dir,
    _key_rotation,
    _argon2,
    _plaintext_links,
    _debug_logs,
)


def run(settings: Settings, facts: Facts, *, deploy: bool = False) -> list[Problem]:
    """Every problem the rules find, errors first."""
    rules = BASIC + DEPLOY if deploy else BASIC
    problems = [problem for rule in rules for problem in rule(settings, facts)]
    return sorted(problems, key=lambda problem: problem.level is not Level.ERROR)


def is_deployment(settings: Settings, listener: Listener) -> bool:
    """What ``latchkey serve`` takes for a production start, to log the deploy rules too:
    an issuer or a listener that is not this machine's loopback."""
    issuer_host = urlsplit(settings.issuer).hostname or ""
    return not (is_loopback(issuer_host) and is_loopback(listener.host))
