"""The admin's history import in a real headless Chromium, against a real uvicorn and a real Celery
worker: upload the documented example files, read the dry run's summary, confirm, watch the import
finish — under the strict CSP, without a single violation."""

from pathlib import Path

import pytest
from django.conf import settings

from customers.models import Customer, ImportJob, UserSession
from tests.live.conftest import ROOT, service_env
from tests.live.test_csp_browser import CHROMIUM, CHROMIUM_FLAGS, RECORD_VIOLATIONS, chromium_or_skip
from tests.live.test_webhooks_live import start_web, start_worker

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
EXAMPLES = Path(settings.BASE_DIR) / "docs" / "examples" / "history"
SUMMARY = [
    ["customers", "4", "0", "0", "0"],
    ["events", "2", "0", "0", "0"],
    ["nps_responses", "3", "0", "0", "0"],
    ["subscriptions", "5", "0", "0", "0"],
    ["support_tickets", "4", "0", "0", "0"],
    ["user_sessions", "5", "0", "0", "0"],
]
ROWS = "#import-summary tbody tr"


def test_a_manager_uploads_checks_confirms_and_watches_the_import(start_process, redis_url, manager):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    env = service_env(REDIS_URL=redis_url, CELERY_TASK_ALWAYS_EAGER="false")
    base = start_web(start_process, env)
    start_worker(start_process, env)
    files = [str(p) for p in sorted(EXAMPLES.iterdir()) if p.name != "mapping.json"]
    screenshots = ROOT / ".pytest-logs"
    console: list[str] = []
    missing: list[str] = []

    # No ORM calls while Playwright runs: its sync API keeps an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1400})
            context.add_init_script(RECORD_VIOLATIONS)
            page = context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text} {m.location.get('url', '')}"))
            page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
            page.goto(f"{base}/admin/login/?next=/admin/customers/importjob/add/")
            page.fill("#id_username", manager.username)
            page.fill("#id_password", "s3cret-pass-123")
            page.click("input[type=submit]")
            page.wait_for_selector("#import-upload")
            page.set_input_files("input[name=files]", files)
            page.fill("input[name=timezone]", "UTC")
            page.click("#import-upload input[type=submit]")

            # The dry run: the page refreshes itself until the worker is done.
            page.wait_for_selector('#import-status[data-status="succeeded"][data-dry-run="true"]', timeout=90_000)
            assert page.text_content("#import-status strong") == "Dry run: Succeeded (every file read)"
            assert [r.locator("td").all_text_contents() for r in page.locator(ROWS).all()] == SUMMARY
            assert page.locator("#import-confirm").count() == 1
            page.screenshot(path=str(screenshots / "import-dry-run.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []

            page.click("#import-confirm input[type=submit]")
            page.wait_for_selector('#import-status[data-status="succeeded"][data-dry-run="false"]', timeout=90_000)
            assert page.text_content("#import-status strong") == "Import: Succeeded (every file read)"
            assert [r.locator("td").all_text_contents() for r in page.locator(ROWS).all()] == SUMMARY
            assert page.locator("#import-dry-run tbody tr").count() == 6
            assert page.locator("#import-confirm").count() == 0
            states = page.locator("#import-progress tbody tr td:nth-child(5)").all_text_contents()
            assert states == ["done"] * 6
            page.screenshot(path=str(screenshots / "import-done.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()

    assert missing == []
    problems = [line for line in console if "Content Security Policy" in line or line.startswith("error")]
    assert [line for line in problems if not line.endswith("/favicon.ico")] == []  # the admin has no icon
    job = ImportJob.objects.get()
    assert (job.status, job.dry_run, job.created_by_id) == ("succeeded", False, manager.pk)
    assert (Customer.objects.count(), UserSession.objects.count()) == (4, 7)
