"""The account page's files through the ASGI app: headers, content types, nothing else served.

What the page does in a browser is tested in tests/browser/.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from latchkey.web.account import CONTENT_SECURITY_POLICY

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "latchkey" / "web" / "static"
ASSETS = {
    "/account/app.js": "text/javascript; charset=utf-8",
    "/account/app.css": "text/css; charset=utf-8",
    "/account/icon.svg": "image/svg+xml",
}


@pytest.fixture
def backend() -> str:
    """The page needs no database: SQLite only."""
    return "sqlite"


def assert_strict_headers(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


async def test_page_is_html_with_strict_headers(client: httpx.AsyncClient) -> None:
    """GET /account is the HTML page, never stored, with the CSP and the other headers."""
    response = await client.get("/account")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert_strict_headers(response)
    assert '<script src="/account/app.js" defer></script>' in response.text


def test_csp_allows_nothing_inline_or_foreign() -> None:
    """The policy is the strict one: own origin only, no inline code, no framing."""
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


@pytest.mark.parametrize(("path", "media_type"), ASSETS.items())
async def test_assets_are_served_with_their_type(
    client: httpx.AsyncClient, path: str, media_type: str
) -> None:
    """Script, style sheet and icon come with their content type, the headers and an ETag."""
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == "no-cache"
    assert_strict_headers(response)
    assert response.content == (STATIC / path.rsplit("/", 1)[1]).read_bytes()
    again = await client.get(path, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_page_refers_only_to_served_assets(client: httpx.AsyncClient) -> None:
    """Every src and href in the page is one of the served files (nothing from elsewhere)."""
    page = (await client.get("/account")).text
    references = set(re.findall(r'(?:src|href)="([^"]*)"', page))
    assert references == set(ASSETS)


@pytest.mark.parametrize(
    "path",
    [
        "/account/nope.js",
        "/account/account.html",  # in the static directory, but not an asset
        "/account/..%2Fapp.py",
        "/account/..%2F..%2Fsettings.py",
        "/account/%2e%2e%2fsettings.py",
        "/account/static/app.js",
        "/account/app.js/x",
        "/account/APP.JS",
    ],
)
async def test_unknown_assets_are_404(client: httpx.AsyncClient, path: str) -> None:
    """Only the named files are served: no path reaches the file system. The 404 carries
    the page's security headers too."""
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_dot_segments_do_not_escape(client: httpx.AsyncClient) -> None:
    """/account/../settings.py (sent as is) serves no file of the package."""
    request = client.build_request("GET", "http://testserver/account/x")
    request.url = request.url.copy_with(raw_path=b"/account/../settings.py")
    response = await client.send(request)
    assert response.status_code == 404
    assert b"Settings" not in response.content


async def test_page_is_read_only(client: httpx.AsyncClient) -> None:
    """POST to the page or an asset is 405."""
    assert (await client.post("/account")).status_code == 405
    assert (await client.post("/account/app.js")).status_code == 405


def test_script_keeps_tokens_out_of_storage() -> None:
    """The script never touches web storage or document.cookie, and never parses HTML."""
    lines = (STATIC / "app.js").read_text().splitlines()
    script = "\n".join(line for line in lines if not line.lstrip().startswith("//"))
    for forbidden in ("localStorage", "sessionStorage", "document.cookie", "innerHTML", "eval("):
        assert forbidden not in script, forbidden
    page = (STATIC / "account.html").read_text()
    assert "<style" not in page
    assert " style=" not in page
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/account/app.js" defer>']


def test_wheel_ships_every_static_file() -> None:
    """pyproject's package-data covers every file of web/static/."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["latchkey"]
    files = [path.relative_to(ROOT / "src" / "latchkey").as_posix() for path in STATIC.iterdir()]
    assert files
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
