"""The rules of ``latchkey check``: each finds its problem, and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from latchkey.checks import Facts, Level, Listener, Problem, gather, is_deployment, run
from latchkey.settings import Settings
from support import TEST_SECRET, make_settings

PRODUCTION = {
    "issuer": "https://auth.example.com",
    "key_rotation_interval": "90d",
    "argon2_time_cost": 3,
    "argon2_memory_kib": 65536,
}


def ids(problems: list[Problem]) -> list[str]:
    return [problem.id for problem in problems]


def production(tmp_path: Path, **overrides: object) -> Settings:
    """A configuration that passes --deploy: https issuer, a lasting data directory (not
    under /tmp: the rules look at paths only), rotation on."""
    values: dict[str, object] = {"data_dir": Path("/var/lib/latchkey"), **PRODUCTION, **overrides}
    data_dir = values.pop("data_dir")
    assert isinstance(data_dir, Path)
    return make_settings(data_dir, **values)


def facts(**listener: object) -> Facts:
    return Facts(Listener(**listener))  # type: ignore[arg-type]


def test_the_defaults_pass_the_basic_rules(tmp_path: Path) -> None:
    assert run(make_settings(tmp_path / "data"), facts()) == []


def test_a_production_configuration_passes_deploy(tmp_path: Path) -> None:
    settings = production(tmp_path)
    known = gather(settings, Listener(), environ={}, env_file=tmp_path / ".env")
    assert run(settings, known, deploy=True) == []


def test_an_http_issuer_is_an_error_naming_it_under_deploy(tmp_path: Path) -> None:
    settings = production(tmp_path, issuer="http://auth.example.com")
    assert run(settings, facts()) == []  # not a basic rule: a laptop serves http
    (problem,) = run(settings, facts(), deploy=True)
    assert problem.id == "issuer-http" and problem.level is Level.ERROR
    assert "http://auth.example.com" in problem.message
    assert problem.line().startswith("error issuer-http: LATCHKEY_ISSUER is http://auth.exa")
    assert " Fix: " in problem.line() and "\n" not in problem.line()


@pytest.mark.parametrize(
    ("listener", "expected"),
    [
        ({"port": 8000}, []),
        ({"port": 9000}, ["issuer-port"]),
        ({"host": "0.0.0.0"}, ["issuer-loopback"]),
        ({"host": "localhost", "port": 8000}, []),
    ],
)
def test_the_default_issuer_must_match_where_the_service_listens(
    tmp_path: Path, listener: dict[str, object], expected: list[str]
) -> None:
    """LATCHKEY_ISSUER left at http://127.0.0.1:8000 while the service is served elsewhere."""
    assert ids(run(make_settings(tmp_path), facts(**listener))) == expected


def test_a_public_issuer_may_be_served_on_any_port(tmp_path: Path) -> None:
    """Behind a proxy the issuer's port is the proxy's: nothing to compare."""
    settings = production(tmp_path)
    assert run(settings, facts(port=9000)) == []


def test_an_access_ttl_beyond_the_verifiers_max_lifetime(tmp_path: Path) -> None:
    assert ids(run(make_settings(tmp_path, access_ttl="2h"), facts())) == ["access-ttl-long"]
    assert run(make_settings(tmp_path, access_ttl="1h"), facts()) == []


def test_several_instances_need_postgresql_and_redis(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    found = run(settings, facts(instances=2))
    assert ids(found) == ["sqlite-instances", "no-redis"]
    assert found[0].level is Level.ERROR and found[1].level is Level.WARNING
    assert ids(run(settings, facts(workers=2))) == ["no-redis"]  # one machine: SQLite is fine
    shared = make_settings(
        tmp_path,
        database_url="postgresql://latchkey@127.0.0.1/latchkey",
        secret_key=TEST_SECRET,
        redis_url="redis://127.0.0.1:6379/0",
    )
    assert run(shared, facts(instances=3, workers=2)) == []


def test_trusting_every_forwarder_on_a_public_listener(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, issuer="https://auth.example.com")
    anyone = Facts(Listener(host="0.0.0.0"), forwarded_allow_ips="*")
    assert "forwarded-any" in ids(run(settings, anyone))
    behind = Facts(Listener(), forwarded_allow_ips="*")  # loopback: only the proxy reaches it
    assert run(settings, behind) == []


def test_deploy_rules_each_find_their_problem(tmp_path: Path) -> None:
    cases = {
        "listener-public": (production(tmp_path), facts(host="10.0.0.5")),
        "cors-http": (
            production(tmp_path, cors_origins="http://app.example.com,http://localhost:5173"),
            facts(),
        ),
        "data-dir-relative": (production(tmp_path, data_dir=Path("latchkey-data")), facts()),
        "data-dir-temporary": (production(tmp_path, data_dir=Path("/tmp/latchkey")), facts()),
        "key-rotation-off": (production(tmp_path, key_rotation_interval=0), facts()),
        "argon2-weak": (production(tmp_path, argon2_memory_kib=8), facts()),
        "log-debug": (production(tmp_path, log_level="debug"), facts()),
        "redis-plaintext": (production(tmp_path, redis_url="redis://cache.internal/0"), facts()),
        "database-plaintext": (
            production(
                tmp_path,
                database_url="postgresql://latchkey@db.internal/latchkey",
                secret_key=TEST_SECRET,
            ),
            facts(),
        ),
    }
    for expected, (settings, known) in cases.items():
        assert ids(run(settings, known, deploy=True)) == [expected], expected


def test_encrypted_links_and_local_services_pass(tmp_path: Path) -> None:
    settings = production(
        tmp_path,
        redis_url="rediss://cache.internal/0",
        database_url="postgresql://latchkey@db.internal/latchkey?ssl=require",
        secret_key=TEST_SECRET,
    )
    assert run(settings, facts(), deploy=True) == []
    local = production(
        tmp_path,
        redis_url="redis://127.0.0.1/0",
        database_url="postgresql://latchkey@localhost/latchkey",
        secret_key=TEST_SECRET,
    )
    assert run(local, facts(), deploy=True) == []


def test_files_holding_secrets_must_be_owner_only(tmp_path: Path) -> None:
    """The data directory, the secret key, the database, the signing key file and .env."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    secret = data / "secret.key"
    secret.write_text(TEST_SECRET)
    secret.chmod(0o600)
    database = data / "latchkey.db"
    database.touch(mode=0o600)
    key_file = tmp_path / "signing.pem"
    key_file.touch(mode=0o600)
    env_file = tmp_path / ".env"
    env_file.touch(mode=0o600)
    settings = production(tmp_path, data_dir=data, signing_key_file=key_file)

    def exposed() -> list[str]:
        known = gather(settings, Listener(), environ={}, env_file=env_file)
        found = [p for p in run(settings, known, deploy=True) if p.id == "secret-readable"]
        assert all(problem.level is Level.ERROR for problem in found)
        return [problem.message.split(" can be read")[0] for problem in found]

    assert exposed() == []
    for path, mode in [
        (data, 0o755),
        (secret, 0o644),
        (database, 0o640),
        (key_file, 0o604),
        (env_file, 0o644),
    ]:
        path.chmod(mode)
        assert exposed() == [str(path)], path
        path.chmod(0o700 if path.is_dir() else 0o600)


def test_gather_reads_forwarded_allow_ips_as_uvicorn_does(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert gather(settings, Listener(), environ={}).forwarded_allow_ips == "127.0.0.1,::1"
    environ = {"FORWARDED_ALLOW_IPS": "10.0.0.1"}
    assert gather(settings, Listener(), environ=environ).forwarded_allow_ips == "10.0.0.1"


def test_errors_come_first(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", key_rotation_interval=0)
    levels = [problem.level for problem in run(settings, facts(instances=2), deploy=True)]
    assert levels == sorted(levels, key=lambda level: level is not Level.ERROR)
    assert levels[0] is Level.ERROR and levels[-1] is Level.WARNING


@pytest.mark.parametrize(
    ("issuer", "host", "deployment"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1", False),
        ("http://localhost:8000", "::1", False),
        ("https://auth.example.com", "127.0.0.1", True),
        ("http://127.0.0.1:8000", "0.0.0.0", True),
    ],
)
def test_what_serve_takes_for_a_deployment(
    tmp_path: Path, issuer: str, host: str, deployment: bool
) -> None:
    settings = make_settings(tmp_path, issuer=issuer)
    assert is_deployment(settings, Listener(host=host)) is deployment


@pytest.mark.parametrize(
    ("address", "found"),
    [("127.0.0.1:9000", False), ("[::1]:9000", False), ("", False), ("0.0.0.0:9000", True)],
)
def test_a_public_management_listener_is_a_deploy_warning(
    tmp_path: Path, address: str, found: bool
) -> None:
    settings = production(tmp_path, management_addr=address)
    problems = [p for p in run(settings, facts(), deploy=True) if p.id == "management-public"]
    assert bool(problems) is found
    assert all(p.level is Level.WARNING and address in p.message for p in problems)
