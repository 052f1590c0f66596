"""The admin's alert bell in a real headless Chromium against a real uvicorn: a CSM acknowledges,
snoozes and marks read from the bell (the count follows, the rows change, nothing else does), and
the menu's text reads at WCAG AA contrast (>= 4.5:1) in the light and dark themes, whether the
theme comes from the system (prefers-color-scheme) or from the admin's theme toggle."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from alerts.models import Alert, NotificationPreference
from tests.helpers import make_alert
from tests.live.conftest import ROOT
from tests.live.test_csp_browser import CHROMIUM, CHROMIUM_FLAGS, RECORD_VIOLATIONS, chromium_or_skip

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
SHOTS = ROOT / ".pytest-logs"

# Every element of the open menu that shows text: its colour against the first opaque background
# behind it (WCAG 2 relative luminance; translucent layers blended over what lies below).
CONTRASTS = """
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, below) => [0, 1, 2].map((i) => top[i] * top[3] + below[i] * (1 - top[3])).concat([1]);
  const background = (el) => {
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const bg = parse(getComputedStyle(node).backgroundColor);
      if (bg[3] > 0) layers.push(bg);
      if (bg[3] >= 1) break;
    }
    return layers.reverse().reduce((below, top) => over(top, below), [255, 255, 255, 1]);
  };
  const channel = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]);
  const out = [];
  const menu = document.querySelector("#cs-alert-bell .cs-bell-menu");
  for (const el of [menu, ...menu.querySelectorAll("*")]) {
    const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join(" ").trim();
    const isInput = el.tagName === "INPUT";
    if ((!text && !isInput) || !el.getClientRects().length) continue;
    const bg = background(el);
    const fg = over(parse(getComputedStyle(el).color), bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    out.push({ text: text || el.type, ratio: Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100,
               fg: getComputedStyle(el).color, bg: `rgb(${bg.slice(0, 3).map(Math.round).join(", ")})` });
  }
  return out;
}
"""


def sign_in(page, base: str, user) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "s3cret-pass-123")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def test_a_csm_acknowledges_snoozes_and_marks_read_from_the_bell(asgi_server, csm, other_csm, make_customer):
    chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    globex = make_customer(owner=csm, name="Globex")
    ack = make_alert(globex, title="Critical churn risk: Globex", severity="critical")
    four_hours = make_alert(globex, title="Payment failed: Globex", severity="high")
    chosen = make_alert(globex, title="Health dropped: Globex", severity="medium")
    read = make_alert(globex, title="NPS detractor: Globex", severity="low")
    theirs = make_alert(make_customer(owner=other_csm, name="Initech"), title="Risk rose: Initech")
    # Tomorrow 09:30 on the browser's wall clock (Berlin), typed into the date field.
    typed_day = (timezone.now() + dt.timedelta(days=2)).date()
    typed = f"{typed_day.isoformat()}T09:30"

    # No ORM calls while Playwright runs: its sync API keeps an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Berlin")
            context.add_init_script(RECORD_VIOLATIONS)
            page = context.new_page()
            sign_in(page, asgi_server, csm)
            expect(page.locator(".cs-bell-count")).to_have_text("4")
            page.click("#cs-alert-bell .cs-bell-button")
            items = page.locator(".cs-bell-item")
            expect(items).to_have_count(4)
            assert "Initech" not in page.text_content(".cs-bell-menu")
            page.screenshot(path=str(SHOTS / "bell-menu-light.png"))

            page.click(f".cs-bell-item[data-alert-id='{ack.pk}'] button[data-act=acknowledge]")
            expect(page.locator(".cs-bell-count")).to_have_text("3")
            expect(page.locator(f".cs-bell-item[data-alert-id='{ack.pk}']")).to_have_count(0)

            item = page.locator(f".cs-bell-item[data-alert-id='{four_hours.pk}']")
            item.locator("button[data-act=snooze-menu]").click()
            expect(item.locator("button[data-preset]")).to_have_text(["1 hour", "4 hours", "Tomorrow 9:00", "1 week"])
            page.screenshot(path=str(SHOTS / "bell-snooze-open.png"))
            clicked = timezone.now()
            item.locator("button[data-preset='4h']").click()
            expect(page.locator(".cs-bell-count")).to_have_text("2")

            item = page.locator(f".cs-bell-item[data-alert-id='{chosen.pk}']")
            item.locator("button[data-act=snooze-menu]").click()
            item.locator("input.cs-bell-until").fill(typed)
            item.locator("button[data-act=snooze-until]").click()
            expect(page.locator(".cs-bell-count")).to_have_text("1")

            page.click(f".cs-bell-item[data-alert-id='{read.pk}'] button[data-act=read]")
            expect(page.locator(".cs-bell-count")).to_be_hidden()
            expect(page.locator(".cs-bell-empty")).to_be_visible()
            expect(page.locator("#cs-alert-bell")).to_have_attribute("data-count", "0")
            page.screenshot(path=str(SHOTS / "bell-menu-empty.png"))

            page.reload()  # the count is the server's, not this page's memory
            expect(page.locator("#cs-alert-bell")).to_have_attribute("data-count", "0")
            expect(page.locator(".cs-bell-count")).to_be_hidden()

            page.goto(f"{asgi_server}/admin/alerts/alert/{ack.pk}/change/")  # the alert page shows the same
            expect(page.locator(".cs-alert-state")).to_have_text("Acknowledged · read")
            page.screenshot(path=str(SHOTS / "alert-page.png"), full_page=True)

            page.click("#user-tools a.cs-my-prefs")  # their own preferences: no user to pick
            page.wait_for_selector("#notificationpreference_form")
            assert page.locator("[name=user]").count() == 0
            page.fill("#id_quiet_hours_start", "22:00")
            page.fill("#id_quiet_hours_end", "07:00")
            page.check("#id_digest_enabled")
            page.screenshot(path=str(SHOTS / "my-notification-preferences.png"), full_page=True)
            page.click("input[name=_save]")
            expect(page.locator(".messagelist .success")).to_have_count(1)
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()
    done = timezone.now()

    rows = {alert.pk: alert for alert in Alert.objects.all()}
    assert (rows[ack.pk].status, rows[ack.pk].read, rows[ack.pk].acknowledged_by_id) == ("acknowledged", True, csm.pk)
    assert (rows[four_hours.pk].status, rows[four_hours.pk].read) == ("snoozed", False)
    snoozed_until = rows[four_hours.pk].snoozed_until
    assert clicked + dt.timedelta(hours=4) <= snoozed_until <= done + dt.timedelta(hours=4)
    expected = dt.datetime.combine(typed_day, dt.time(9, 30), tzinfo=ZoneInfo("Europe/Berlin"))
    assert (rows[chosen.pk].status, rows[chosen.pk].snoozed_until) == ("snoozed", expected)
    assert (rows[read.pk].status, rows[read.pk].read, rows[read.pk].snoozed_until) == ("open", True, None)
    assert (rows[theirs.pk].status, rows[theirs.pk].read) == ("open", False)
    pref = NotificationPreference.objects.get()
    assert (pref.user_id, pref.quiet_hours_start, pref.quiet_hours_end, pref.digest_enabled) == (
        csm.pk,
        dt.time(22),
        dt.time(7),
        True,
    )


# (how the theme is chosen, the system's colour scheme, the theme the admin's toggle is set to)
THEMES = [
    ("light-system", "light", None),
    ("dark-system", "dark", None),
    ("dark-toggle", "light", "dark"),
    ("light-toggle", "dark", "light"),
]


def test_the_bell_menu_reads_in_light_and_dark_themes(asgi_server, csm, make_customer):
    chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    globex = make_customer(owner=csm, name="Globex")
    for severity in ("critical", "high", "medium", "low"):
        make_alert(globex, title=f"{severity.title()} alert: Globex", severity=severity)
    measured: dict[str, list[dict]] = {}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            for name, scheme, toggled in THEMES:
                context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
                page = context.new_page()
                sign_in(page, asgi_server, csm)
                if toggled:
                    for _ in range(3):  # Django's toggle cycles auto -> light/dark -> ...
                        if page.evaluate("document.documentElement.dataset.theme") == toggled:
                            break
                        page.click("#user-tools .theme-toggle")
                    assert page.evaluate("document.documentElement.dataset.theme") == toggled
                expect(page.locator(".cs-bell-count")).to_have_text("4")
                page.click("#cs-alert-bell .cs-bell-button")
                expect(page.locator(".cs-bell-item")).to_have_count(4)
                page.locator(".cs-bell-item button[data-act=snooze-menu]").first.click()
                body_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
                assert body_bg == ("rgb(18, 18, 18)" if (toggled or scheme) == "dark" else "rgb(255, 255, 255)")
                page.screenshot(path=str(SHOTS / f"bell-theme-{name}.png"))
                measured[name] = page.evaluate(CONTRASTS)
                context.close()
        finally:
            browser.close()

    for name, rows in measured.items():
        texts = {row["text"] for row in rows}
        # Every kind of text the menu shows was measured: titles, details, actions, snooze, footer.
        assert {"Critical alert: Globex", "Acknowledge", "Snooze…", "Mark read", "4 hours", "All open alerts"} <= texts
        assert any(text.startswith("critical · Globex") for text in texts), texts
        low = [row for row in rows if row["ratio"] < 4.5]
        assert low == [], f"{name}: {low}"
