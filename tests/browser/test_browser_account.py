"""The account page in a real browser (headless Chromium driven by Playwright).

Sign-in, the HttpOnly refresh cookie, silent refresh across expiring access tokens, tabs that
share one session, revocation from another device, and a same-site page of another origin
that tries to use the cookie. Fixtures: tests/browser/conftest.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from browser_support import NewContext, OtherOrigin, Site
from playwright.sync_api import BrowserContext, Page, expect

from e2e.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

COOKIE = "__Secure-latchkey-refresh"
ENDED = re.compile(r"^Your session has ended")


def open_account(context: BrowserContext, site: Site) -> Page:
    """A new tab on the account page, once it knows whether it is signed in."""
    page = context.new_page()
    page.goto(site.account_url)
    expect(page.locator("body")).not_to_have_attribute("data-state", "loading")
    return page


def sign_in(page: Page, username: str = "alice", password: str = PASSWORD) -> None:
    """Fill in the form, press Enter, wait for the account view and its session list."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password", exact=True).press("Enter")
    expect_signed_in(page, username)


def expect_signed_in(page: Page, username: str = "alice") -> None:
    expect(page.locator("body")).to_have_attribute("data-state", "signed-in")
    expect(page.locator("#me-username")).to_have_text(username)
    expect(this_device(page)).to_contain_text("This device")


def expect_signed_out(page: Page, message: str | re.Pattern[str]) -> None:
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#message")).to_have_text(message)


def this_device(page: Page) -> Any:
    return page.locator("#sessions tr.current")


def sid(page: Page) -> str:
    value = page.locator("body").get_attribute("data-sid")
    assert value
    return value


def refresh_cookie(context: BrowserContext) -> dict[str, Any]:
    cookies = [cookie for cookie in context.cookies() if "latchkey" in cookie["name"]]
    assert len(cookies) == 1, cookies
    return dict(cookies[0])


def test_sign_in_shows_the_user_and_this_device(context: BrowserContext, site: Site) -> None:
    """After sign-in the page names the user and lists this device's session, marked so."""
    page = open_account(context, site)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page)
    expect(page.locator("#me-scope")).to_have_text("read write")
    row = this_device(page)
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-sid", sid(page))
    expect(row).to_contain_text("Chrome on Linux")
    expect(row.get_by_role("button")).to_have_count(0)  # this device signs out instead


def test_keyboard_sign_in_and_errors_are_announced(context: BrowserContext, site: Site) -> None:
    """Focus starts in the username field; a wrong password is reported in the live region
    and focus returns to the password field; Tab and Enter are enough to sign in."""
    page = open_account(context, site)
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    message = page.locator("#message")
    expect(message).to_have_text("Invalid username or password.")
    expect(message).to_have_attribute("aria-live", "polite")
    expect(message).to_have_class(re.compile(r"\berror\b"))
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect_signed_in(page)
    expect(message).to_be_empty()
    expect(page.get_by_role("heading", name="Signed in as alice")).to_be_focused()


def test_reload_stays_signed_in(context: BrowserContext, site: Site) -> None:
    """A reload signs in again from the refresh cookie: same session, no password."""
    page = open_account(context, site)
    sign_in(page)
    session = sid(page)
    page.reload()
    expect_signed_in(page)
    expect(page.locator("body")).to_have_attribute("data-refreshes", "1")
    assert sid(page) == session


def test_page_works_at_the_loopback_address(context: BrowserContext, site: Site) -> None:
    """At http://127.0.0.1:PORT (not the issuer's origin) the page works the same: the
    CSRF check accepts the request's own origin."""
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{site.server.port}/account")
    sign_in(page)
    page.reload()
    expect_signed_in(page)
    expect(page.locator("body")).to_have_attribute("data-refreshes", "1")


def test_refresh_token_is_out_of_reach_of_scripts(context: BrowserContext, site: Site) -> None:
    """The page's scripts see no latchkey cookie and nothing in web storage; the browser
    holds the refresh cookie HttpOnly, Secure, SameSite=Strict, for /auth only."""
    page = open_account(context, site)
    sign_in(page)
    assert "latchkey" not in page.evaluate("document.cookie")
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    cookie = refresh_cookie(context)
    assert cookie["name"] == COOKIE
    assert cookie["httpOnly"] is True
    assert cookie["secure"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/auth"
    assert cookie["domain"] == "localhost"
    assert cookie["value"].startswith("lkrt.")


def test_page_keeps_working_across_expiring_access_tokens(
    context: BrowserContext, site: Site
) -> None:
    """With 2-second access tokens the page refreshes by itself, again and again, and its
    calls keep working."""
    page = open_account(context, site)
    sign_in(page)
    session = sid(page)
    # Real expiry: tokens live 1 to 2 s and are renewed ahead (no eval: the CSP forbids it).
    three_or_more = re.compile(r"^([3-9]|\d{2,})$")
    expect(page.locator("body")).to_have_attribute("data-refreshes", three_or_more, timeout=15_000)
    page.get_by_role("button", name="Refresh list").click()
    expect_signed_in(page)
    expect(this_device(page)).to_have_attribute("data-sid", session)
    expect(page.locator("#message")).to_be_empty()


def test_page_seen_again_after_a_sleep_renews_at_once(context: BrowserContext, site: Site) -> None:
    """Timers of a hidden tab or a sleeping computer do not fire on time: when the page is
    seen again past its renewal time, it renews then, not at the next 401."""
    page = context.new_page()
    page.clock.install()  # the page's Date and timers, under the test's control
    page.goto(site.account_url)
    sign_in(page)
    # Playwright takes seconds; the page counts milliseconds.
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 0.1)  # timers stop firing
    before = int(page.locator("body").get_attribute("data-refreshes") or "0")
    # The computer "sleeps" 30 s: the clock moves on, no timer fires.
    page.clock.set_system_time(page.evaluate("Date.now()") / 1000 + 30)
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator("body")).to_have_attribute("data-refreshes", str(before + 1))
    expect_signed_in(page)


def test_two_tabs_refreshing_at_once_stay_signed_in(context: BrowserContext, site: Site) -> None:
    """Two tabs of one browser refresh at the same moment: both stay signed in, on the same
    session, which is still alive afterwards."""
    first = open_account(context, site)
    sign_in(first)
    second = open_account(context, site)
    expect_signed_in(second)
    session = sid(first)
    expect(second.locator("body")).to_have_attribute("data-sid", session)

    for page in (first, second):  # start both before waiting for either
        page.evaluate("() => { window.refreshed = window.latchkeyRefreshNow(); }")
    assert [page.evaluate("window.refreshed") for page in (first, second)] == [True, True]

    for page in (first, second):
        page.get_by_role("button", name="Refresh list").click()
        expect_signed_in(page)
        expect(this_device(page)).to_have_attribute("data-sid", session)
    assert first.evaluate("window.latchkeyRefreshNow()") is True


def test_signing_out_in_one_tab_signs_out_the_others(context: BrowserContext, site: Site) -> None:
    """Sign out in one tab: the other tab shows the sign-in form at once, without a reload;
    a reload stays signed out."""
    first = open_account(context, site)
    sign_in(first)
    second = open_account(context, site)
    expect_signed_in(second)

    first.get_by_role("button", name="Sign out", exact=True).click()
    expect_signed_out(first, "You are signed out.")
    expect_signed_out(second, "You signed out in another tab.")
    assert not [cookie for cookie in context.cookies() if "latchkey" in cookie["name"]]
    second.reload()
    expect_signed_out(second, "")


def test_failed_sign_out_keeps_the_session(context: BrowserContext, site: Site) -> None:
    """When signing out fails (here the server is made to answer 503), the page says so, stays
    signed in with its cookie, and a second try signs out."""
    page = open_account(context, site)
    sign_in(page)
    unavailable = {
        "error": "temporarily_unavailable",
        "error_description": "The service is temporarily unavailable. Try again shortly.",
    }
    page.route("**/auth/logout", lambda route: route.fulfill(status=503, json=unavailable), times=1)
    sign_out = page.get_by_role("button", name="Sign out", exact=True)
    sign_out.click()
    expect(page.locator("#message")).to_have_text(
        re.compile(r"^Signing out failed: you are still signed in\.")
    )
    expect(page.locator("body")).to_have_attribute("data-state", "signed-in")
    assert refresh_cookie(context)["value"].startswith("lkrt.")
    sign_out.click()
    expect_signed_out(page, "You are signed out.")
    assert not [cookie for cookie in context.cookies() if "latchkey" in cookie["name"]]


def test_signing_in_in_one_tab_signs_in_the_others(context: BrowserContext, site: Site) -> None:
    """A tab showing the sign-in form follows when another tab signs in."""
    first = open_account(context, site)
    second = open_account(context, site)
    expect(second.locator("body")).to_have_attribute("data-state", "signed-out")
    sign_in(first)
    expect_signed_in(second)
    expect(second.locator("body")).to_have_attribute("data-sid", sid(first))


def test_revoking_another_device_ends_its_session(new_context: NewContext, site: Site) -> None:
    """Revoke device B's session from device A's list: B's next call lands on the sign-in
    form with a message, and B's browser drops the dead cookie."""
    device_a, device_b = new_context(), new_context()
    a = open_account(device_a, site)
    sign_in(a)
    b = open_account(device_b, site)
    sign_in(b)
    b_session = sid(b)
    assert b_session != sid(a)

    a.get_by_role("button", name="Refresh list").click()
    row = a.locator(f'#sessions tr[data-sid="{b_session}"]')
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_have_count(0)
    expect(a.locator("#message")).to_contain_text("is revoked")
    expect_signed_in(a)

    # B's next action (its own silent refresh may come first: either way it ends the same).
    b.locator("#reload-sessions").dispatch_event("click")
    expect_signed_out(b, ENDED)
    expect(b.locator("#message")).to_have_class(re.compile(r"\berror\b"))
    assert not [cookie for cookie in device_b.cookies() if "latchkey" in cookie["name"]]


def test_signing_out_everywhere_ends_other_devices(new_context: NewContext, site: Site) -> None:
    """ "Sign out everywhere" on A ends A and B."""
    device_a, device_b = new_context(), new_context()
    a = open_account(device_a, site)
    sign_in(a)
    b = open_account(device_b, site)
    sign_in(b)
    a.get_by_role("button", name="Sign out everywhere").click()
    expect_signed_out(a, "You are signed out on every device.")
    b.locator("#reload-sessions").dispatch_event("click")
    expect_signed_out(b, ENDED)


def test_another_origin_cannot_use_the_cookie(
    context: BrowserContext, site: Site, other_origin: OtherOrigin
) -> None:
    """A page of another origin on the same site (so the SameSite=Strict cookie is sent)
    posts forms and no-cors fetches to /auth/refresh and /auth/logout: every one is refused
    with 403, the cookie is neither rotated nor cleared, and the session goes on."""
    page = open_account(context, site)
    sign_in(page)
    session = sid(page)
    page.close()  # no silent refresh in the background: the cookie must stay as it is
    before = refresh_cookie(context)["value"]

    attacker = context.new_page()
    # The request headers as sent, cookies included (Playwright's own view of a no-cors
    # request lacks them): Chromium's DevTools protocol.
    sent: list[dict[str, str]] = []
    devtools = context.new_cdp_session(attacker)
    devtools.send("Network.enable")
    devtools.on("Network.requestWillBeSentExtraInfo", lambda event: sent.append(event["headers"]))
    attacker.goto(other_origin.url)
    fetch = (
        "url => fetch(url, {method: 'POST', credentials: 'include', mode: 'no-cors', "
        "headers: {'X-Latchkey-CSRF': '1'}, body: '{}'}).then(() => 'sent', String)"
    )
    for path, form in (("/auth/refresh", "#refresh"), ("/auth/logout", "#logout")):
        url = f"{site.origin}{path}"
        with attacker.expect_response(url) as posted:
            attacker.locator(f"{form} button").click()
        with attacker.expect_response(url) as fetched:
            assert attacker.evaluate(fetch, url) == "sent"
        assert posted.value.status == 403
        assert fetched.value.status == 403
    with_cookie = [
        headers
        for headers in sent
        if COOKIE in headers.get("Cookie", "") and headers.get("Origin") == other_origin.origin
    ]
    assert len(with_cookie) == 4, "the browser really sent the cookie with every attempt"

    assert refresh_cookie(context)["value"] == before
    again = open_account(context, site)
    expect_signed_in(again)
    assert sid(again) == session
    assert refresh_cookie(context)["value"] != before  # the page's own refresh rotated it


def test_change_password(context: BrowserContext, site: Site) -> None:
    """The form checks that both new passwords match, shows the server's policy and
    wrong-password errors, and confirms a change."""
    page = open_account(context, site)
    sign_in(page, "bob")
    message = page.locator("#message")
    current = page.get_by_label("Current password")
    new = page.get_by_label("New password", exact=True)
    confirm = page.get_by_label("New password again")

    current.fill(PASSWORD)
    new.fill("a brand new passphrase")
    confirm.fill("a different passphrase")
    confirm.press("Enter")
    expect(message).to_have_text("The two new passwords differ.")
    expect(confirm).to_be_focused()

    new.fill("short")
    confirm.fill("short")
    confirm.press("Enter")
    expect(message).to_have_class(re.compile(r"\berror\b"))
    expect(message).to_have_text("The password must be at least 8 characters long.")
    expect(new).to_be_focused()

    current.fill("not my password")
    new.fill("a brand new passphrase")
    confirm.fill("a brand new passphrase")
    confirm.press("Enter")
    expect(message).to_have_text("The current password is wrong.")
    expect(current).to_be_focused()

    current.fill(PASSWORD)
    confirm.press("Enter")
    expect(message).to_have_text("Your password is changed. Your other sessions have ended.")
    expect(current).to_have_value("")
    expect_signed_in(page, "bob")
