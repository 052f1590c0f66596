"""The model card in a real headless Chromium against a real uvicorn over PostgreSQL: a manager
opens the champion's card (every chart drawn, no CSP violation), then promotes the other version
through its confirmation page; the server re-scores the book with it. Screenshots of the card,
light and dark, land in .pytest-logs/."""

import pytest
from django.utils import timezone

from customers.models import Customer
from demo.generator import generate
from predictions.models import ChurnPrediction, ModelVersion, ModelVersionChange, PredictionRun
from predictions.services.registry import model_promote, model_train, rules_version
from predictions.services.scoring import score_customers
from tests.live.conftest import ROOT
from tests.live.test_csp_browser import CHROMIUM, CHROMIUM_FLAGS, chromium_or_skip, signed_in_admin_page

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
SHOTS = ROOT / ".pytest-logs"


def _charts_drawn(page, version: ModelVersion) -> None:
    """The reliability curve (a dot per stored bin) and, for a trained model, the importance
    bars (the rules have none): each a sized, non-empty SVG."""
    charts = [("#cs-card-calibration", "circle.cs-observed", len(version.metrics["calibration_bins"]))]
    if version.importance:
        charts.append(("#cs-card-importance", "rect.cs-bar", min(15, len(version.importance))))
    for section, mark, count in charts:
        svg = page.locator(f"{section} svg")
        assert svg.count() == 1, section
        box = svg.bounding_box()
        assert box["width"] > 200 and box["height"] > 150, (section, box)
        assert svg.locator(mark).count() == count > 0, section


def test_a_manager_reads_the_champions_card_and_promotes_the_other_version(asgi_server, make_user):
    # The database is read before and after the browser: Playwright's sync API runs an event loop.
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    # First: it restores the role groups a previous transactional test's flush removed.
    manager = make_user("manager", first_name="Ines", last_name="Duarte")
    generate(customers=600, seed=11, as_of=timezone.now().date(), activity_scale=0.5, progress=False)
    trained = model_train(seed=0, min_positives=20)
    # Whether the trained model beats the rules on this small book moves with the time of day of
    # the training's as-of: the card under test is a trained champion's (drift, importance), so
    # the setup makes it one either way.
    if ModelVersion.objects.get(status="champion").pk != trained.pk:
        model_promote(trained, "The test's setup: a trained champion.")
    score_customers()  # a batch, so the champion's drift is measured
    champion = ModelVersion.objects.get(status="champion")
    other = rules_version()
    drifted = len(PredictionRun.objects.filter(trigger="batch", model_version=champion).latest("started_at").drift)
    assert drifted > 0
    base = asgi_server

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            for scheme in ("light", "dark"):
                page = signed_in_admin_page(browser, base, manager, color_scheme=scheme)
                page.goto(f"{base}/admin/predictions/modelversion/{champion.pk}/change/")
                assert page.locator("#cs-card-blocks tbody tr.cs-block-row").count() == len(champion.metrics["blocks"])
                _charts_drawn(page, champion)
                assert page.locator("#cs-card-drift tbody tr").count() == drifted
                assert page.locator("#cs-card-thresholds tr.cs-band-row").count() == 2
                assert page.locator(".deletelink").count() == 0  # the champion is never deleted
                page.screenshot(path=str(SHOTS / f"model-card-champion-{scheme}.png"), full_page=True)
                for section in ("blocks", "calibration", "thresholds", "importance"):
                    page.locator(f"#cs-card-{section}").screenshot(
                        path=str(SHOTS / f"model-card-{section}-{scheme}.png")
                    )
                assert page.evaluate("window.__cspViolations") == []

            # Promote the other version: its card, the button, the confirmation, the new champion.
            page.goto(f"{base}/admin/predictions/modelversion/{other.pk}/change/")
            _charts_drawn(page, other)
            page.click("a.cs-promote")
            page.wait_for_url(f"{base}/admin/predictions/modelversion/{other.pk}/promote/")
            assert champion.version in page.text_content("#content-main")
            page.screenshot(path=str(SHOTS / "model-card-promote-confirmation.png"), full_page=True)
            page.fill("#id_note", "Checked on the enterprise plan.")
            page.click("input[type=submit].default")
            page.wait_for_url(f"{base}/admin/predictions/modelversion/{other.pk}/change/")
            assert f"The champion is now {other.version}" in page.text_content(".messagelist")
            assert "Checked on the enterprise plan." in page.text_content("#cs-card-changes")
            assert page.locator(f"a.cs-roll-back:has-text('Roll back to {champion.version}')").count() == 1
            page.screenshot(path=str(SHOTS / "model-card-after-promotion.png"), full_page=True)
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()

    assert ModelVersion.objects.get(status="champion").pk == other.pk
    change = ModelVersionChange.objects.get(changed_by=manager)
    assert (change.action, change.version_id, change.previous_id) == ("promoted", other.pk, champion.pk)
    run = PredictionRun.objects.get(run_key=f"model-change:{change.pk}")
    active = Customer.objects.filter(is_active=True).count()
    assert ChurnPrediction.objects.filter(run=run, model_version=other.version).count() == active
