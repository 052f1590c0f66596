"""Alerts in the admin page: acknowledge, snooze and mark read from the alert page and the bell,
the bell's count, and each user's own notification preferences."""

import datetime as dt
import json
import re

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from alerts.models import Alert, NotificationPreference
from alerts.selectors import alert_bell
from alerts.services import alert_acknowledge
from tests.helpers import make_alert

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)  # 14:00 in Berlin (CEST)
JSON = {"HTTP_ACCEPT": "application/json"}
BELL = "/admin/alerts/alert/bell/"


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def state(alert: Alert) -> tuple:
    alert.refresh_from_db()
    return (alert.status, alert.read, alert.snoozed_until, alert.acknowledged_by_id)


# --- acknowledging marks read; the bell counts open unread alerts ---------------------------------


def test_acknowledging_marks_the_alert_read(csm, make_customer):
    alert = make_alert(make_customer(owner=csm))
    with time_machine.travel(T0, tick=False):
        alert_acknowledge(user=csm, alert_id=alert.pk)
    assert state(alert) == ("acknowledged", True, None, csm.pk)


def test_acknowledging_again_after_mark_unread_marks_read_and_keeps_the_first_time(csm, make_customer):
    alert = make_alert(make_customer(owner=csm), status="acknowledged", acknowledged_at=T0, acknowledged_by=csm)
    alert_acknowledge(user=csm, alert_id=alert.pk)
    alert.refresh_from_db()
    assert (alert.read, alert.acknowledged_at) == (True, T0)


def test_the_bell_counts_open_unread_alerts_in_the_users_scope(csm, other_csm, manager, make_customer):
    mine, theirs = make_customer(owner=csm, name="Globex"), make_customer(owner=other_csm)
    with time_machine.travel(T0, tick=False):
        newest = make_alert(mine, title="Open, unread")
    make_alert(mine, title="Older, unread")
    make_alert(mine, title="Read", read=True)
    make_alert(mine, title="Acknowledged", status="acknowledged")
    make_alert(mine, title="Resolved", status="resolved")
    snooze_over = make_alert(mine, title="Snooze ran out", status="snoozed", snoozed_until=T0)
    make_alert(mine, title="Snoozed", status="snoozed", snoozed_until=T0 + dt.timedelta(days=1))
    make_alert(theirs, title="Another portfolio")
    make_alert(None, title="Sync failed", source="sync_failed")

    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        bell = alert_bell(user=csm)
        assert bell.count == 3
        assert sorted(a.title for a in bell.alerts) == ["Older, unread", "Open, unread", "Snooze ran out"]
        assert alert_bell(user=manager).count == 5  # plus another portfolio's and the book-wide one
        response = client_for(csm).get(BELL)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert {"id": newest.pk, "title": "Open, unread", "severity": "high", "customer": "Globex"}.items() <= next(
        a for a in body["alerts"] if a["id"] == newest.pk
    ).items()
    assert [p["value"] for p in body["snoozePresets"]] == ["1h", "4h", "tomorrow", "1w"]
    assert snooze_over.pk in {a["id"] for a in body["alerts"]}


# --- the bell's and the alert page's actions --------------------------------------------------------


def test_acknowledge_from_the_bell_answers_the_new_bell(csm, make_customer):
    customer = make_customer(owner=csm)
    alert, other = make_alert(customer), make_alert(customer)
    with time_machine.travel(T0, tick=False):
        response = client_for(csm).post(f"/admin/alerts/alert/{alert.pk}/acknowledge/", {}, **JSON)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["read"], body["bell"]["count"]) == ("acknowledged", True, 1)
    assert [a["id"] for a in body["bell"]["alerts"]] == [other.pk]
    assert state(alert) == ("acknowledged", True, None, csm.pk)
    assert state(other) == ("open", False, None, None)


@pytest.mark.parametrize(
    ("fields", "until"),
    [
        ({"preset": "1h"}, dt.datetime(2026, 6, 1, 13, 0, tzinfo=dt.UTC)),
        ({"preset": "4h"}, dt.datetime(2026, 6, 1, 16, 0, tzinfo=dt.UTC)),
        ({"preset": "1w"}, dt.datetime(2026, 6, 8, 12, 0, tzinfo=dt.UTC)),
        # 9:00 tomorrow in the browser's zone (bell.js sends it): 07:00 UTC in Berlin's summer.
        ({"preset": "tomorrow", "tz": "Europe/Berlin"}, dt.datetime(2026, 6, 2, 7, 0, tzinfo=dt.UTC)),
        ({"preset": "tomorrow", "tz": "America/New_York"}, dt.datetime(2026, 6, 2, 13, 0, tzinfo=dt.UTC)),
        # No zone from the browser: the user's preferences (none saved: UTC).
        ({"preset": "tomorrow"}, dt.datetime(2026, 6, 2, 9, 0, tzinfo=dt.UTC)),
        # The bell sends an instant; the alert page's date-time field a local time.
        ({"until": "2026-06-20T08:30:00.000Z"}, dt.datetime(2026, 6, 20, 8, 30, tzinfo=dt.UTC)),
        ({"until": "2026-06-20T08:30", "tz": "Europe/Berlin"}, dt.datetime(2026, 6, 20, 6, 30, tzinfo=dt.UTC)),
    ],
)
def test_snooze_presets_and_a_chosen_time(csm, make_customer, fields, until):
    alert = make_alert(make_customer(owner=csm))
    with time_machine.travel(T0, tick=False):
        response = client_for(csm).post(f"/admin/alerts/alert/{alert.pk}/snooze/", fields, **JSON)
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["bell"]["count"]) == ("snoozed", 0)
    assert state(alert) == ("snoozed", False, until, None)


def test_tomorrow_follows_the_users_saved_time_zone(csm, make_customer):
    NotificationPreference.objects.create(user=csm, time_zone="Asia/Tokyo")
    alert = make_alert(make_customer(owner=csm))
    with time_machine.travel(T0, tick=False):  # 21:00 in Tokyo: tomorrow is 2 June there
        client_for(csm).post(f"/admin/alerts/alert/{alert.pk}/snooze/", {"preset": "tomorrow"}, **JSON)
    assert state(alert)[2] == dt.datetime(2026, 6, 2, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "preset"),
        ({"preset": "forever"}, "preset"),
        ({"until": "next week"}, "until"),
        ({"until": "2026-07-02T12:00:00Z"}, "until"),  # past the 30 days
        ({"until": "2026-06-01T11:00:00Z"}, "until"),  # the past
    ],
)
def test_bad_snoozes_are_400_naming_the_field_and_change_nothing(csm, make_customer, fields, field):
    alert = make_alert(make_customer(owner=csm))
    with time_machine.travel(T0, tick=False):
        response = client_for(csm).post(f"/admin/alerts/alert/{alert.pk}/snooze/", fields, **JSON)
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [field]
    assert response.json()["code"] == "invalid"
    assert state(alert) == ("open", False, None, None)


def test_mark_read_and_unread(csm, make_customer):
    alert = make_alert(make_customer(owner=csm))
    client = client_for(csm)
    response = client.post(f"/admin/alerts/alert/{alert.pk}/read/", {"read": "1"}, **JSON)
    assert (response.status_code, response.json()["read"], response.json()["bell"]["count"]) == (200, True, 0)
    assert state(alert) == ("open", True, None, None)
    assert client.post(f"/admin/alerts/alert/{alert.pk}/read/", {"read": "0"}, **JSON).json()["bell"]["count"] == 1
    assert state(alert) == ("open", False, None, None)


def test_the_alert_pages_forms_redirect_back_with_a_message(csm, make_customer):
    alert = make_alert(make_customer(owner=csm))
    client = client_for(csm)
    change = reverse("admin:alerts_alert_change", args=[alert.pk])
    page = client.get(change).content.decode()
    for action in ("acknowledge", "snooze", "read"):
        assert f'action="/admin/alerts/alert/{alert.pk}/{action}/"' in page
    assert re.findall(r'name="preset" value="([^"]+)"', page) == ["1h", "4h", "tomorrow", "1w"]

    with time_machine.travel(T0, tick=False):
        response = client.post(
            f"/admin/alerts/alert/{alert.pk}/snooze/", {"until": "2026-06-03T09:00", "tz": "Europe/Berlin"}, follow=True
        )
    assert response.redirect_chain == [(change, 302)]
    assert [str(m) for m in response.context["messages"]] == ["Alert snoozed until Wed 03 Jun 09:00 (Europe/Berlin)."]
    response = client.post(f"/admin/alerts/alert/{alert.pk}/acknowledge/", follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Alert acknowledged."]
    assert state(alert) == ("acknowledged", True, None, csm.pk)


def test_too_late_a_snooze_from_the_alert_page_is_an_error_message(csm, make_customer):
    alert = make_alert(make_customer(owner=csm))
    with time_machine.travel(T0, tick=False):
        response = client_for(csm).post(
            f"/admin/alerts/alert/{alert.pk}/snooze/", {"until": "2026-08-01T09:00"}, follow=True
        )
    assert [str(m) for m in response.context["messages"]] == ["Snooze until a time in the next 30 days."]
    assert state(alert) == ("open", False, None, None)


def test_resolved_alerts_are_409(csm, make_customer):
    alert = make_alert(make_customer(owner=csm), status="resolved", resolved_at=T0)
    response = client_for(csm).post(f"/admin/alerts/alert/{alert.pk}/acknowledge/", {}, **JSON)
    assert (response.status_code, response.json()["code"]) == (409, "conflict")
    assert state(alert) == ("resolved", False, None, None)


def test_another_portfolios_alert_is_404_and_untouched(csm, other_csm, make_customer):
    theirs = make_alert(make_customer(owner=other_csm))
    book_wide = make_alert(None, source="sync_failed")
    client = client_for(csm)
    for alert in (theirs, book_wide):
        for action, fields in (("acknowledge", {}), ("snooze", {"preset": "1h"}), ("read", {"read": "1"})):
            assert client.post(f"/admin/alerts/alert/{alert.pk}/{action}/", fields, **JSON).status_code == 404
            assert client.get(f"/admin/alerts/alert/{alert.pk}/{action}/").status_code == 404
        assert state(alert) == ("open", False, None, None)


def test_viewers_may_not_act_and_see_no_buttons(viewer, csm, make_customer):
    alert = make_alert(make_customer(owner=csm))
    client = client_for(viewer)
    assert client.post(f"/admin/alerts/alert/{alert.pk}/acknowledge/", {}, **JSON).status_code == 403
    page = client.get(reverse("admin:alerts_alert_change", args=[alert.pk])).content.decode()
    assert 'id="cs-alert-actions"' not in page
    assert state(alert) == ("open", False, None, None)


def test_actions_need_the_csrf_token(csm, make_customer):
    alert = make_alert(make_customer(owner=csm))
    client = client_for(csm, enforce_csrf_checks=True)
    assert client.post(f"/admin/alerts/alert/{alert.pk}/acknowledge/", {}, **JSON).status_code == 403
    assert state(alert) == ("open", False, None, None)
    page = client.get("/admin/").content.decode()
    token = re.search(r'id="cs-alert-bell".*?name="csrfmiddlewaretoken" value="([^"]+)"', page, re.S).group(1)
    response = client.post(f"/admin/alerts/alert/{alert.pk}/acknowledge/", {}, HTTP_X_CSRFTOKEN=token, **JSON)
    assert response.status_code == 200
    assert state(alert)[:2] == ("acknowledged", True)


def test_the_bell_is_get_only(csm):
    assert client_for(csm).post(BELL, {}).status_code == 405


# --- "My notification preferences" ----------------------------------------------------------------


def test_a_csm_sets_their_own_preferences_in_the_admin(csm, other_csm, settings):
    settings.NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK = True
    theirs = NotificationPreference.objects.create(user=other_csm, slack_webhook_url="http://127.0.0.1:9/other")
    client = client_for(csm)
    page = client.get("/admin/").content.decode()
    assert 'href="/admin/alerts/notificationpreference/mine/"' in page

    response = client.get("/admin/alerts/notificationpreference/mine/")
    add = f"/admin/alerts/notificationpreference/add/?user={csm.pk}"
    assert (response.status_code, response["Location"]) == (302, add)
    form = client.get(add).context["adminform"].form
    assert "user" not in form.fields

    saved = client.post(
        add,
        {
            "email_enabled": "on",
            "slack_webhook_url": "http://127.0.0.1:9/services/mine",
            "teams_webhook_url": "",
            "in_app_enabled": "on",
            "min_severity": "high",
            "time_zone": "Europe/Berlin",
            "quiet_hours_start": "22:00",
            "quiet_hours_end": "07:00",
            "digest_enabled": "on",
        },
    )
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved
    mine = NotificationPreference.objects.get(user=csm)
    assert (mine.slack_webhook_url, mine.min_severity, mine.time_zone, mine.digest_enabled) == (
        "http://127.0.0.1:9/services/mine",
        "high",
        "Europe/Berlin",
        True,
    )
    assert (mine.quiet_hours_start, mine.quiet_hours_end) == (dt.time(22), dt.time(7))

    response = client.get("/admin/alerts/notificationpreference/mine/")
    assert response["Location"] == f"/admin/alerts/notificationpreference/{mine.pk}/change/"
    assert client.get("/admin/alerts/notificationpreference/add/").status_code == 403  # theirs exists already
    changelist = client.get("/admin/alerts/notificationpreference/")
    assert [row.pk for row in changelist.context["cl"].result_list] == [mine.pk]
    assert client.get(f"/admin/alerts/notificationpreference/{theirs.pk}/change/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.slack_webhook_url == "http://127.0.0.1:9/other"


def test_bad_preferences_are_form_errors_and_nothing_is_saved(csm):
    response = client_for(csm).post(
        "/admin/alerts/notificationpreference/add/",
        {"min_severity": "high", "time_zone": "Mars/Olympus", "quiet_hours_start": "22:00"},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert sorted(errors) == ["quiet_hours_end", "time_zone"]
    assert not NotificationPreference.objects.filter(user=csm).exists()


def test_viewers_get_no_preferences_link(viewer):
    assert "/notificationpreference/mine/" not in client_for(viewer).get("/admin/").content.decode()


# --- "View site" -----------------------------------------------------------------------------------


def test_view_site_is_a_real_page(csm):
    client = client_for(csm)
    page = client.get("/admin/").content.decode()
    (href,) = re.findall(r'<a href="([^"]+)">View site</a>', page)
    assert href == "/admin/"
    assert client.get(href).status_code == 200


def test_bell_json_is_valid_for_an_empty_book(csm):
    assert json.loads(client_for(csm).get(BELL).content)["count"] == 0
