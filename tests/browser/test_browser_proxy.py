"""The first deployment of docs/deployment.md, run as written: the settings file, the systemd
unit's command line and the nginx site, with a self-signed certificate, free ports and the
host name ``auth.example.test`` in place of the production values.

Chromium reaches nginx over IPv6 loopback (``::1``) while nginx reaches latchkey over IPv4
(``127.0.0.1``), so the address that the session shows tells whether the forwarded headers
were believed. nginx is Debian's (``/usr/sbin/nginx``); without it the tests are skipped,
except under CI, where they fail (.ci/run installs it).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from browser_support import CHROMIUM, NewContext, Site
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import Browser, expect, sync_playwright
from test_browser_account import open_account, refresh_cookie, sign_in, this_device

from e2e.conftest import ROOT, STARTUP_TIMEOUT, Processes, Server, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

HOST = "auth.example.test"
DEPLOYMENT = ROOT / "docs" / "deployment.md"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def documented(language: str, marker: str) -> str:
    """The one fenced ``language`` block of docs/deployment.md that contains ``marker``."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", DEPLOYMENT.read_text(), re.M | re.S)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"expected one {language} block with {marker!r}, found {len(found)}"
    return found[0]


def replace(text: str, old: str, new: str, count: int = 1) -> str:
    """``text`` with ``old`` replaced, failing when the documented text no longer has it."""
    assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times, not {count}"
    return text.replace(old, new)


@dataclass
class Certificate:
    cert: Path
    key: Path
    spki_sha256: str  # base64, what Chromium's --ignore-certificate-errors-spki-list takes


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for HOST (EC P-256, valid for a day)."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(directory / "fullchain.pem", directory / "privkey.pem", "")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    paths.spki_sha256 = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return paths


@dataclass
class Deployment:
    https_port: int
    http_port: int
    latchkey: Server | None = None

    @property
    def origin(self) -> str:
        return f"https://{HOST}:{self.https_port}"


def settings_file(data_dir: Path, origin: str) -> dict[str, str]:
    """/etc/latchkey/latchkey.env as documented, for this test's host and data directory."""
    text = documented("ini", "LATCHKEY_ISSUER=")
    text = replace(text, "https://auth.example.com", origin)
    text = replace(text, "/var/lib/latchkey", str(data_dir))
    return dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")


def serve_command(port: int) -> list[str]:
    """The ExecStart line of the documented unit, with this interpreter and a free port."""
    unit = documented("ini", "[Service]")
    (line,) = (line for line in unit.splitlines() if line.startswith("ExecStart="))
    line = replace(line, "ExecStart=/opt/latchkey/bin/latchkey", "")
    line = replace(line, "--port 8000", f"--port {port}")
    return [sys.executable, "-m", "latchkey", *line.split()]


def nginx_config(
    directory: Path, certificate: Certificate, upstream: int, site: Deployment
) -> Path:
    """The documented site, wrapped in the few lines Debian's nginx.conf adds around it, with
    every path under ``directory`` (no root-owned file is touched)."""
    text = documented("nginx", "upstream latchkey")
    text = replace(text, "auth.example.com", HOST, count=4)
    text = replace(text, "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    text = replace(text, "listen 80;", f"listen 127.0.0.1:{site.http_port};")
    text = replace(text, "listen [::]:80;", f"listen [::1]:{site.http_port};")
    text = replace(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{site.https_port} ssl http2;")
    text = replace(text, "listen [::]:443 ssl http2;", f"listen [::1]:{site.https_port} ssl http2;")
    text = replace(text, f"/etc/letsencrypt/live/{HOST}/fullchain.pem", str(certificate.cert))
    text = replace(text, f"/etc/letsencrypt/live/{HOST}/privkey.pem", str(certificate.key))
    (directory / "latchkey.site").write_text(text)
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    wrapper = directory / "nginx.conf"
    wrapper.write_text(
        f"daemon off;\nmaster_process off;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log {directory / 'access.log'};\n{temp}\n"
        f"    include {directory / 'latchkey.site'};\n}}\n"
    )
    return wrapper


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, certificate: Certificate
) -> Iterator[Deployment]:
    """latchkey (the unit's command, the settings file) behind nginx (the site)."""
    if not Path(NGINX).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{NGINX} is missing (Debian: apt-get install nginx)")
        pytest.skip(f"{NGINX} is missing (Debian: apt-get install nginx)")
    workdir = tmp_path_factory.mktemp("deployment")
    processes = Processes(workdir)
    site = Deployment(https_port=free_port(), http_port=free_port())
    try:
        data_dir = workdir / "data"
        processes.migrate(data_dir)
        processes.add_user(data_dir, "alice", "read write")
        port = free_port()
        env = {**processes.latchkey_env(data_dir), **settings_file(data_dir, site.origin)}
        latchkey = processes._spawn("latchkey", serve_command(port), port, env)
        processes.wait_ready(latchkey, "/healthz")
        site.latchkey = latchkey

        config = nginx_config(workdir, certificate, port, site)
        command = [NGINX, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(config)]
        nginx = processes._spawn("nginx", command, site.https_port, {"PATH": os.defpath})
        wait_for_tls(nginx.process, site, workdir / "error.log")
        yield site
    finally:
        processes.stop_all()


def wait_for_tls(process: subprocess.Popen[bytes], site: Deployment, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(verify=False, trust_env=False, timeout=1) as client:
        while True:
            if process.poll() is not None:
                pytest.fail(f"nginx exited with {process.returncode}\n{log.read_text()}")
            try:
                if client.get(f"https://127.0.0.1:{site.https_port}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nginx did not answer within {STARTUP_TIMEOUT} s\n{log.read_text()}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def browser(certificate: Certificate) -> Iterator[Browser]:
    """Chromium that resolves HOST to ``::1`` and accepts this one self-signed certificate
    (by its key; every other certificate error still fails)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    arguments = [
        f"--host-resolver-rules=MAP {HOST} [::1]",
        f"--ignore-certificate-errors-spki-list={certificate.spki_sha256}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=arguments
        )
        try:
            yield browser
        finally:
            browser.close()


def test_sign_in_through_nginx(new_context: NewContext, deployment: Deployment) -> None:
    """Through the documented nginx: the refresh cookie is a __Secure- one of the public
    host, the session shows the browser's address (``::1``, not nginx's ``127.0.0.1``) and
    the issuer the page's metadata names is the https one."""
    context = new_context()
    assert deployment.latchkey is not None
    page = open_account(context, Site(deployment.latchkey, deployment.origin))
    sign_in(page)

    cookie = refresh_cookie(context)
    assert cookie["name"] == "__Secure-latchkey-refresh"
    assert cookie["secure"] and cookie["httpOnly"]
    assert cookie["domain"] == HOST

    expect(this_device(page)).to_contain_text("::1")
    expect(this_device(page)).not_to_contain_text("127.0.0.1")

    metadata = page.evaluate(
        "fetch('/.well-known/oauth-authorization-server').then((r) => r.json())"
    )
    assert metadata["issuer"] == deployment.origin
    assert metadata["token_endpoint"].startswith(f"{deployment.origin}/")


def test_plain_http_redirects_and_metrics_stay_inside(deployment: Deployment) -> None:
    with httpx.Client(verify=False, trust_env=False, timeout=10) as client:
        plain = client.get(f"http://127.0.0.1:{deployment.http_port}/account")
        assert plain.status_code == 301
        assert plain.headers["location"] == f"https://{HOST}/account"

        secure = f"https://127.0.0.1:{deployment.https_port}"
        assert client.get(f"{secure}/metrics").status_code == 404
        health = client.get(f"{secure}/healthz")
        assert health.status_code == 200
        assert "max-age=63072000" in health.headers["strict-transport-security"]
        # nginx's request id reaches latchkey, which echoes it: one id in both logs.
        assert re.fullmatch(r"[0-9a-f]{32}", health.headers["x-request-id"])


def test_the_documented_unit_is_valid(tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts the unit without a warning (the ExecStart binary
    pointed at this environment's ``latchkey``)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing")
    unit = documented("ini", "[Service]")
    executable = Path(sys.executable).with_name("latchkey")
    unit = replace(unit, "/opt/latchkey/bin/latchkey", str(executable))
    path = tmp_path / "latchkey.service"
    path.write_text(unit)
    result = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [line for line in result.stderr.splitlines() if str(path) in line]
    assert result.returncode == 0 and not problems, result.stderr
