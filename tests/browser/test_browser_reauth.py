"""The account page when an operation needs a recent sign-in (RFC 9470): a dialog asks for the
password, proves it again in the same session and the operation goes on; the password-change
form uses the current password it already has. Headless Chromium at a phone's width, keyboard
only, and no axe-core (WCAG 2.1 AA) violation with the dialog open.

Its own server, with LATCHKEY_FRESH_AUTH_MAX_AGE=1: a sign-in is "too old" two seconds later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe
from browser_support import NewContext, Site
from playwright.sync_api import BrowserContext, Page, expect
from test_browser_account import expect_signed_in, expect_signed_out, open_account, sign_in

from e2e.conftest import PASSWORD, Processes

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

USERS = ("carol", "dave", "erin")
MAX_AGE = 1
PHONE = {"width": 390, "height": 844}
NOT_CONFIRMED = "Nothing was changed: this needs your password again."


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("reauth")
    processes = Processes(workdir)
    data_dir = workdir / "data"
    try:
        processes.migrate(data_dir)
        for username in USERS:
            processes.add_user(data_dir, username, "read")
        server = processes.start_latchkey(
            data_dir, issuer_host="localhost", LATCHKEY_FRESH_AUTH_MAX_AGE=str(MAX_AGE)
        )
        yield Site(server, f"http://localhost:{server.port}")
    finally:
        processes.stop_all()


def stale_sign_in(context: BrowserContext, site: Site, username: str) -> Page:
    """Signed in on a phone-sized page, then waited (on the page's own clock) until that
    sign-in is older than MAX_AGE: whole seconds, so two of them are always past it."""
    page = open_account(context, site)
    page.set_viewport_size(PHONE)
    sign_in(page, username)
    page.wait_for_function("t => Date.now() > t", arg=time.time() * 1000 + 2100)
    return page


def no_axe_violations(page: Page) -> None:
    results = Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]})
    assert results.violations_count == 0, results.generate_report()


def test_signing_out_everywhere_asks_for_the_password(new_context: NewContext, site: Site) -> None:
    """A stale sign-in: "Sign out everywhere" opens the dialog (focus in the password field,
    no axe violation); a wrong password is announced there; the right one, typed and sent
    with Enter, proves it and every session ends."""
    other_device = open_account(new_context(), site)
    sign_in(other_device, "carol")
    page = stale_sign_in(new_context(), site, "carol")
    page.get_by_role("button", name="Sign out everywhere").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Confirm it is you")
    expect(dialog).to_be_visible()
    field = dialog.get_by_label("Your password")
    expect(field).to_be_focused()
    no_axe_violations(page)

    page.keyboard.type("not my password")
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("alert")).to_have_text("The password is wrong.")
    expect(field).to_be_focused()
    expect(page.locator("body")).to_have_attribute("data-state", "signed-in")

    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect_signed_out(page, "You are signed out on every device.")
    other_device.reload()
    expect_signed_out(other_device, "")


def test_cancelling_the_dialog_changes_nothing(context: BrowserContext, site: Site) -> None:
    """Escape (or Cancel) closes the dialog: nothing is done, the user is told so and stays
    signed in."""
    page = stale_sign_in(context, site, "dave")
    page.get_by_role("button", name="Sign out everywhere").click()
    dialog = page.get_by_role("dialog", name="Confirm it is you")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#message")).to_have_text(NOT_CONFIRMED)
    expect_signed_in(page, "dave")

    page.get_by_role("button", name="Sign out everywhere").click()
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.locator("#message")).to_have_text(NOT_CONFIRMED)
    expect_signed_in(page, "dave")


def test_password_change_after_a_stale_sign_in(context: BrowserContext, site: Site) -> None:
    """The form's current password proves the sign-in again: no dialog, the change is made."""
    page = stale_sign_in(context, site, "erin")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a brand new passphrase")
    page.get_by_label("New password again").fill("a brand new passphrase")
    page.get_by_label("New password again").press("Enter")
    expect(page.locator("#message")).to_have_text(
        "Your password is changed. Your other sessions have ended."
    )
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect_signed_in(page, "erin")
