"""REST: acknowledge/snooze an alert, read and replace one's notification preferences."""

import datetime as dt

import pytest
import time_machine

from alerts.models import Alert, NotificationPreference
from tests.helpers import make_alert

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def test_acknowledge_returns_the_status_and_keeps_the_first_acknowledgement(csm, make_customer, api_for):
    alert = make_alert(make_customer(owner=csm))
    with time_machine.travel(T0, tick=False):
        response = api_for(csm).post(f"/api/alerts/{alert.pk}/acknowledge")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "id": alert.pk,
        "status": "acknowledged",
        "acknowledgedAt": "2026-06-01T12:00:00Z",
        "acknowledgedBy": csm.pk,
        "snoozedUntil": None,
        "resolvedAt": None,
    }
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        again = api_for(csm).post(f"/api/alerts/{alert.pk}/acknowledge").json()
    assert again["acknowledgedAt"] == "2026-06-01T12:00:00Z"


def test_snooze_by_minutes_or_until(csm, make_customer, api_for):
    alert = make_alert(make_customer(owner=csm))
    with time_machine.travel(T0, tick=False):
        by_minutes = api_for(csm).post(f"/api/alerts/{alert.pk}/snooze", {"minutes": 90}, format="json")
        assert by_minutes.json()["snoozedUntil"] == "2026-06-01T13:30:00Z"
        until = api_for(csm).post(f"/api/alerts/{alert.pk}/snooze", {"until": "2026-06-02T08:00:00Z"}, format="json")
    assert until.status_code == 200
    assert (until.json()["status"], until.json()["snoozedUntil"]) == ("snoozed", "2026-06-02T08:00:00Z")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"minutes": 0},
        {"minutes": "soon"},
        {"until": "2020-01-01T00:00:00Z"},
        {"until": "2026-09-01T00:00:00Z"},
        {"until": "2026-06-02T08:00:00Z", "minutes": 5},
    ],
)
def test_bad_snoozes_are_400_naming_the_field_and_change_nothing(csm, make_customer, api_for, body):
    alert = make_alert(make_customer(owner=csm))
    with time_machine.travel(T0, tick=False):
        response = api_for(csm).post(f"/api/alerts/{alert.pk}/snooze", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()["errors"]) <= {"until", "minutes"} and response.json()["errors"]
    alert.refresh_from_db()
    assert (alert.status, alert.snoozed_until) == ("open", None)


def test_resolved_alerts_cannot_be_acknowledged_or_snoozed(csm, make_customer, api_for):
    alert = make_alert(make_customer(owner=csm), status="resolved", resolved_at=T0)
    assert api_for(csm).post(f"/api/alerts/{alert.pk}/acknowledge").status_code == 409
    assert api_for(csm).post(f"/api/alerts/{alert.pk}/snooze", {"minutes": 5}, format="json").status_code == 409
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is None


def test_book_wide_alerts_are_for_managers_only(csm, manager, api_for):
    alert = make_alert(None, title="Sync failed", source="sync_failed")
    assert api_for(csm).post(f"/api/alerts/{alert.pk}/acknowledge").status_code == 404
    assert api_for(manager).post(f"/api/alerts/{alert.pk}/acknowledge").status_code == 200


def test_alert_list_keeps_the_contract_shape(csm, make_customer, api_for):
    make_alert(make_customer(owner=csm), status="snoozed", snoozed_until=T0)
    (row,) = api_for(csm).get("/api/alerts").json()
    assert set(row) == {"id", "title", "description", "severity", "isRead", "createdAt", "customerId"}


def test_preferences_default_then_replace(csm, api_for, settings, django_assert_max_num_queries):
    client = api_for(csm)
    with django_assert_max_num_queries(2):  # the user and role, the preferences row
        response = client.get("/api/notifications/preferences")
    assert response.json() == {
        "emailEnabled": True,
        "email": csm.email,
        "slackWebhookConfigured": False,
        "teamsWebhookConfigured": False,
        "inAppEnabled": True,
        "minSeverity": "medium",
        "timeZone": "UTC",
        "quietHoursStart": None,
        "quietHoursEnd": None,
        "digestEnabled": False,
    }
    assert not NotificationPreference.objects.exists()  # reading writes nothing
    settings.NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK = True
    body = {
        "emailEnabled": False,
        "slackWebhookUrl": "http://127.0.0.1:9/services/x",
        "minSeverity": "critical",
        "timeZone": "Europe/Berlin",
        "quietHoursStart": "22:00",
        "quietHoursEnd": "07:00",
        "digestEnabled": True,
        "user": 999,
        "id": 5,
    }
    saved = client.put("/api/notifications/preferences", body, format="json")
    assert saved.status_code == 200, saved.content
    assert saved.json()["slackWebhookConfigured"] is True and "slackWebhookUrl" not in saved.json()
    pref = NotificationPreference.objects.get()
    assert (pref.user_id, pref.email_enabled, pref.slack_webhook_url, pref.min_severity, pref.time_zone) == (
        csm.pk,
        False,
        "http://127.0.0.1:9/services/x",
        "critical",
        "Europe/Berlin",
    )
    assert (pref.quiet_hours_start, pref.quiet_hours_end, pref.digest_enabled) == (dt.time(22), dt.time(7), True)
    # The webhook URL is a write-only secret: a PUT without it keeps it; "" clears it.
    client.put("/api/notifications/preferences", {"minSeverity": "high"}, format="json")
    pref.refresh_from_db()
    assert (pref.slack_webhook_url, pref.min_severity, pref.quiet_hours_start) == (
        "http://127.0.0.1:9/services/x",
        "high",
        None,
    )
    client.put("/api/notifications/preferences", {"slackWebhookUrl": ""}, format="json")
    pref.refresh_from_db()
    assert pref.slack_webhook_url == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timeZone": "Mars/Olympus"}, "timeZone"),
        ({"minSeverity": "urgent"}, "minSeverity"),
        ({"quietHoursStart": "22:00"}, "quietHoursEnd"),
        ({"quietHoursStart": "25:00", "quietHoursEnd": "07:00"}, "quietHoursStart"),
        ({"teamsWebhookUrl": "https://10.0.0.1/x"}, "teamsWebhookUrl"),
        ({"emailEnabled": "perhaps"}, "emailEnabled"),
    ],
)
def test_bad_preferences_are_400_naming_the_field(csm, api_for, body, field):
    response = api_for(csm).put("/api/notifications/preferences", body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [field]
    assert not NotificationPreference.objects.exists()
