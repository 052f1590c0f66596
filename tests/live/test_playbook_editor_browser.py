"""The playbook editor in a real headless Chromium against a real uvicorn, as a manager: add steps
of several types, see a validation error on its step and field, fix it, reorder, dry-run the
unsaved steps for a customer, save; the JSON export then holds exactly the steps the form built.
No CSP violation on the way; the editor is screenshot light and dark."""

import json

import pytest

from playbooks.models import Playbook
from playbooks.services import playbook_upsert
from tests.live.conftest import ROOT
from tests.live.test_csp_browser import CHROMIUM, CHROMIUM_FLAGS, chromium_or_skip, signed_in_admin_page

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BUILT = [
    {"type": "notify", "key": "hello", "message": "Heads up", "channel": "in_app", "severity": "medium"},
    {
        "type": "condition",
        "key": "check",
        "if": {"field": "support_tickets", "op": "gt", "value": 2},
        "then": "mail",
        "else": "end",
    },
    {"type": "send_email", "key": "mail", "to": "owner", "subject": "Call {{ customer.name }}", "body": "Tickets."},
    {"type": "wait", "key": "pause", "duration": "2d"},
]


def _add_step(page, kind: str, key: str) -> object:
    page.click("[data-add-step]")
    card = page.locator("[data-step-list] [data-step]").last
    card.locator("select[name$='-type']").select_option(kind)
    card.locator("input[name$='-key']").fill(key)
    return card


def test_a_manager_builds_validates_reorders_dry_runs_and_saves_a_playbook(asgi_server, manager, csm, make_customer):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    owner_email = csm.email
    make_customer(owner=csm, name="Initech", support_tickets=3)
    playbook, _ = playbook_upsert(
        name="Ticket storm", data={"steps": [{"type": "notify", "key": "hello", "message": "Heads up"}]}
    )
    change = f"/admin/playbooks/playbook/{playbook.pk}/change/"
    shots = ROOT / ".pytest-logs"
    shots.mkdir(exist_ok=True)

    # No ORM calls while Playwright runs: its sync API keeps an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            page = signed_in_admin_page(browser, asgi_server, manager, landing=change)
            cards = page.locator("[data-step-list] [data-step]")
            assert cards.count() == 1
            # Only the chosen type's fields show.
            assert page.locator("[data-step] textarea[name='steps-0-message']").is_visible()
            assert not page.locator("[data-step] input[name='steps-0-url']").is_visible()

            mail = _add_step(page, "send_email", "mail")
            mail.locator("input[name$='-to']").fill("nobody")  # not an address
            mail.locator("input[name$='-subject']").fill("Call {{ customer.name }}")
            mail.locator("textarea[name$='-body']").fill("Tickets.")
            assert not mail.locator("input[name$='-intervention_type']").is_visible()
            pause = _add_step(page, "wait", "pause")
            pause.locator("input[name$='-duration']").fill("2d")
            check = _add_step(page, "condition", "check")
            check.locator("select[name$='-if_field']").select_option("support_tickets")
            check.locator("select[name$='-if_op']").select_option("gt")
            check.locator("input[name$='-if_value']").fill("2")
            check.locator("select[name$='-then']").select_option("mail")  # the keys are offered
            check.locator("select[name$='-else']").select_option("end")
            page.click("input[name='_continue']")

            # The error is on the e-mail step's "To" field, in words.
            page.wait_for_selector(".pb-step-invalid")
            invalid = page.locator(".pb-step-invalid")
            assert invalid.count() == 1
            assert invalid.locator("input[name$='-key']").input_value() == "mail"
            assert "Enter a valid email address." in invalid.locator(".errorlist").inner_text()
            assert "{" not in invalid.locator(".errorlist").inner_text()
            invalid.locator("input[name$='-to']").fill("owner")

            # The branch must come before what it jumps to: move it up twice.
            check = cards.nth(3)
            check.locator("[data-move='up']").click()
            cards.nth(2).locator("[data-move='up']").click()
            order = [cards.nth(i).locator("input[name$='-key']").input_value() for i in range(4)]
            assert order == ["hello", "check", "mail", "pause"]
            page.screenshot(path=str(shots / "playbook-editor-light.png"), full_page=True)

            # Dry run of the unsaved steps for Initech, picked with the autocomplete.
            page.click(".pb-dry-run .select2-selection")
            page.fill(".select2-search__field", "Initech")
            page.click(".select2-results__option:has-text('Initech')")
            page.click("[data-dry-run]")
            page.wait_for_selector("[data-dry-run-output] table")
            rows = page.locator("[data-dry-run-output] tbody tr")
            assert [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())] == [
                "hello",
                "check",
                "mail",
                "pause",
            ]
            assert "branch: the condition is true today → mail" in rows.nth(1).inner_text()
            assert f"e-mail {owner_email}: 'Call Initech'" in rows.nth(2).inner_text()
            assert "Nothing was written." in page.inner_text("[data-dry-run-output]")

            page.click("input[name='_continue']")
            page.wait_for_selector(".messagelist .success")
            assert page.locator(".pb-step-invalid").count() == 0

            page.goto(f"{asgi_server}/admin/playbooks/playbook/")
            page.check(f"input[name='_selected_action'][value='{playbook.pk}']")
            page.select_option("select[name='action']", "export_json")
            with page.expect_download() as download_info:
                page.click("button[name='index']")
            with open(download_info.value.path(), encoding="utf-8") as exported:
                export = json.load(exported)

            dark = signed_in_admin_page(browser, asgi_server, manager, landing=change, color_scheme="dark")
            dark.screenshot(path=str(shots / "playbook-editor-dark.png"), full_page=True)
            violations = page.evaluate("window.__cspViolations") + dark.evaluate("window.__cspViolations")
        finally:
            browser.close()

    assert violations == []
    assert export[0]["steps"] == BUILT
    assert Playbook.objects.get(pk=playbook.pk).steps == BUILT
