"""Routing, escalation, grouping, throttling, digest, quiet hours, snooze and auto-resolve.

The clock is controlled with time-machine; email goes to a real local SMTP server.
"""

import datetime as dt

import pytest
import time_machine

from alerts.models import Alert, NotificationDelivery
from alerts.services import alert_acknowledge, alert_create, alert_snooze, alerts_create_many, alerts_resolve_cleared
from alerts.tasks import dispatch_notifications

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def raise_alert(django_capture_on_commit_callbacks):
    def raise_(**fields):
        fields = {"title": "Alert", "message": "Something happened.", "severity": "high", **fields}
        with django_capture_on_commit_callbacks(execute=True):
            return alert_create(**fields)

    return raise_


def inbox(smtp) -> list[tuple[str, str]]:
    return [(m["X-Envelope-To"], m["Subject"]) for m in smtp.messages]


# --- routing ------------------------------------------------------------------------------------


def test_routing_owner_then_managers_for_critical_then_managers_and_admins_without_owner(
    smtp, noise, csm, other_csm, make_user, viewer, make_customer, raise_alert
):
    manager_a, manager_b, admin = make_user("manager"), make_user("manager"), make_user("admin")
    root = make_user(None, is_superuser=True)
    customer = make_customer(owner=csm)
    raise_alert(title="high", customer_id=customer.pk)
    assert inbox(smtp) == [(csm.email, "[ChurnShield] [HIGH] high")]

    smtp.messages.clear()
    raise_alert(title="crit", severity="critical", customer_id=customer.pk)
    assert sorted(to for to, _ in inbox(smtp)) == sorted([csm.email, manager_a.email, manager_b.email])

    smtp.messages.clear()
    raise_alert(title="sync", source="sync_failed")
    assert sorted(to for to, _ in inbox(smtp)) == sorted([manager_a.email, manager_b.email, admin.email, root.email])

    smtp.messages.clear()
    raise_alert(title="orphan", customer_id=make_customer(owner=None).pk)
    assert sorted(to for to, _ in inbox(smtp)) == sorted([manager_a.email, manager_b.email, admin.email, root.email])

    smtp.messages.clear()
    other_csm.is_active = False  # a CSM who left: their customers' alerts go to the managers
    other_csm.save()
    raise_alert(title="left", customer_id=make_customer(owner=other_csm).pk)
    assert sorted(to for to, _ in inbox(smtp)) == sorted([manager_a.email, manager_b.email, admin.email, root.email])
    assert viewer.email not in {to for to, _ in inbox(smtp)}


def test_alert_records_owner_source_and_default_grouping_key(noise, csm, make_customer):
    customer = make_customer(owner=csm)
    alert = alert_create(title="t", message="m", customer_id=customer.pk, source="payment_failed")
    assert (alert.owner_id, alert.source, alert.grouping_key, alert.status) == (
        csm.pk,
        "payment_failed",
        f"customer:{customer.pk}",
        "open",
    )
    assert alert_create(title="t", message="m", source="webhook_dead_letter").grouping_key == "webhook_dead_letter"


def test_minimum_severity_and_disabled_email_are_honoured(smtp, noise, csm, make_customer, prefs, raise_alert):
    prefs(csm, min_severity="high")
    customer = make_customer(owner=csm)
    raise_alert(title="medium", severity="medium", customer_id=customer.pk)
    raise_alert(title="high", severity="high", customer_id=make_customer(owner=csm).pk)
    assert [subject for _, subject in inbox(smtp)] == ["[ChurnShield] [HIGH] high"]
    prefs(csm, email_enabled=False)
    raise_alert(title="critical", severity="critical", customer_id=customer.pk)
    assert len(smtp.messages) == 1
    assert NotificationDelivery.objects.count() == 1


def test_a_batch_is_one_bulk_write_and_one_fan_out(
    smtp, noise, csm, make_customer, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    customers = [make_customer(owner=csm) for _ in range(30)]
    specs = [{"title": f"Risk {c.pk}", "message": "m", "severity": "high", "customer_id": c.pk} for c in customers]
    with django_capture_on_commit_callbacks() as callbacks:
        assert alerts_create_many(alerts=specs) == 30
    assert len(callbacks) == 1  # one fan-out task for the whole batch
    noise.group_wait_seconds = 60  # keep the sends out of the measured fan-out
    noise.save()
    with django_assert_max_num_queries(15):  # 14 + clearing the alerts' owed fan-out, one UPDATE
        callbacks[0]()
    assert NotificationDelivery.objects.filter(status="pending").count() == 30
    assert Alert.objects.filter(owner=csm, source="other").count() == 30


# --- grouping -----------------------------------------------------------------------------------


def test_alerts_of_one_customer_within_the_window_become_one_notification(smtp, noise, csm, make_customer, raise_alert):
    noise.group_wait_seconds, noise.group_interval_minutes = 60, 10
    noise.save()
    acme, other = make_customer(owner=csm, name="Acme", company=""), make_customer(owner=csm)
    with time_machine.travel(T0, tick=False) as clock:
        raise_alert(title="Payment failed", customer_id=acme.pk, source="payment_failed")
        raise_alert(title="Other customer", customer_id=other.pk)
        clock.shift(20)
        raise_alert(title="Risk rose", severity="critical", customer_id=acme.pk, source="risk_rise")
        assert smtp.messages == []
        clock.shift(39)  # 59 s after the first alert: still collecting
        dispatch_notifications()
        assert smtp.messages == []
        clock.shift(2)
        dispatch_notifications()
        assert sorted(subject for _, subject in inbox(smtp)) == [
            "[ChurnShield] [CRITICAL] 2 alerts about Acme",
            "[ChurnShield] [HIGH] Other customer",
        ]
        # After a group was notified, its next alerts wait for the group interval, together.
        smtp.messages.clear()
        clock.shift(60)
        raise_alert(title="Ticket spike", customer_id=acme.pk)
        raise_alert(title="NPS detractor", customer_id=acme.pk)
        clock.shift(8 * 60)
        dispatch_notifications()
        assert smtp.messages == []
        clock.shift(2 * 60)  # 10 min after the group's send
        dispatch_notifications()
        assert inbox(smtp) == [(csm.email, "[ChurnShield] [HIGH] 2 alerts about Acme")]


def test_grouping_is_per_recipient_and_channel(
    smtp, receiver, noise, csm, make_user, make_customer, prefs, raise_alert
):
    manager = make_user("manager")
    prefs(csm, slack_webhook_url=receiver.url())
    customer = make_customer(owner=csm)
    raise_alert(severity="critical", customer_id=customer.pk)
    rows = sorted(NotificationDelivery.objects.values_list("recipient_id", "channel", "status"))
    assert rows == sorted([(csm.pk, "email", "sent"), (csm.pk, "slack", "sent"), (manager.pk, "email", "sent")])
    assert len(receiver.received) == 1


# --- throttling ---------------------------------------------------------------------------------


def test_throttle_delays_and_merges_beyond_the_limit_per_channel(smtp, noise, csm, make_customer, raise_alert):
    noise.throttle_limit, noise.throttle_window_minutes = 2, 60
    noise.save()
    a, b, c = (make_customer(owner=csm) for _ in range(3))
    with time_machine.travel(T0, tick=False) as clock:
        raise_alert(title="A", customer_id=a.pk)
        clock.shift(60)
        raise_alert(title="B", customer_id=b.pk)
        clock.shift(60)
        raise_alert(title="C1", customer_id=c.pk)
        raise_alert(title="C2", customer_id=c.pk)
        assert [subject for _, subject in inbox(smtp)] == ["[ChurnShield] [HIGH] A", "[ChurnShield] [HIGH] B"]
        held = NotificationDelivery.objects.get(status="pending")
        assert held.due_at == T0 + dt.timedelta(minutes=60)  # when the oldest send leaves the window
        assert held.last_error == "throttled: 2 sent in the last 60 min"
        assert held.alerts.count() == 2
        raise_alert(title="Critical", severity="critical", customer_id=a.pk)  # never throttled, but counted
        assert len(smtp.messages) == 3
        clock.move_to(T0 + dt.timedelta(minutes=60, seconds=1))
        dispatch_notifications()  # A left the window; B and the critical one are still in it
        assert len(smtp.messages) == 3
        held.refresh_from_db()
        assert (held.status, held.due_at) == ("pending", T0 + dt.timedelta(minutes=61))
        clock.move_to(T0 + dt.timedelta(minutes=61, seconds=1))
        dispatch_notifications()
        assert inbox(smtp)[-1] == (csm.email, "[ChurnShield] [HIGH] 2 alerts about " + str(c))


# --- digest and quiet hours ---------------------------------------------------------------------


def test_daily_digest_collects_non_critical_alerts_until_the_local_digest_hour(
    smtp, noise, csm, make_customer, prefs, raise_alert
):
    noise.digest_hour = 8
    noise.save()
    prefs(csm, digest_enabled=True, time_zone="America/New_York")
    customer = make_customer(owner=csm)
    with time_machine.travel(dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC), tick=False) as clock:  # 11:00 EDT
        kept = raise_alert(title="Payment failed", customer_id=customer.pk)
        dropped = raise_alert(title="Ticket spike", severity="medium", customer_id=make_customer(owner=csm).pk)
        raise_alert(title="Churn risk high", severity="critical", customer_id=customer.pk)
        assert [subject for _, subject in inbox(smtp)] == ["[ChurnShield] [CRITICAL] Churn risk high"]
        digest = NotificationDelivery.objects.get(channel="digest")
        assert digest.due_at == dt.datetime(2026, 3, 11, 12, 0, tzinfo=dt.UTC)  # 08:00 EDT
        alert_acknowledge(user=csm, alert_id=dropped.pk)
        clock.move_to(dt.datetime(2026, 3, 11, 11, 59, tzinfo=dt.UTC))
        dispatch_notifications()
        assert len(smtp.messages) == 1
        clock.move_to(dt.datetime(2026, 3, 11, 12, 0, 30, tzinfo=dt.UTC))
        dispatch_notifications()
    to, subject = inbox(smtp)[-1]
    assert (to, subject) == (csm.email, "[ChurnShield] Daily digest: 1 alert")
    body = smtp.messages[-1].get_payload(decode=True).decode()
    assert kept.title in body and dropped.title not in body
    assert NotificationDelivery.objects.get(channel="digest").status == "sent"


def test_quiet_hours_hold_non_critical_alerts_until_they_end(smtp, noise, csm, make_customer, prefs, raise_alert):
    prefs(csm, time_zone="Europe/Berlin", quiet_hours_start=dt.time(22), quiet_hours_end=dt.time(7))
    customer = make_customer(owner=csm)
    with time_machine.travel(dt.datetime(2026, 6, 1, 21, 30, tzinfo=dt.UTC), tick=False) as clock:  # 23:30 CEST
        raise_alert(title="Quiet", customer_id=customer.pk)
        raise_alert(title="Loud", severity="critical", customer_id=make_customer(owner=csm).pk)
        assert [subject for _, subject in inbox(smtp)] == ["[ChurnShield] [CRITICAL] Loud"]
        assert NotificationDelivery.objects.get(status="pending").due_at == dt.datetime(2026, 6, 2, 5, 0, tzinfo=dt.UTC)
        clock.move_to(dt.datetime(2026, 6, 2, 4, 59, tzinfo=dt.UTC))
        dispatch_notifications()
        assert len(smtp.messages) == 1
        clock.move_to(dt.datetime(2026, 6, 2, 5, 0, tzinfo=dt.UTC))
        dispatch_notifications()
    assert inbox(smtp)[-1] == (csm.email, "[ChurnShield] [HIGH] Quiet")


def test_a_critical_alert_pulls_a_held_group_forward(smtp, noise, csm, make_customer, prefs, raise_alert):
    prefs(csm, quiet_hours_start=dt.time(0), quiet_hours_end=dt.time(23, 59))
    customer = make_customer(owner=csm)
    with time_machine.travel(T0, tick=False):
        raise_alert(title="Held", customer_id=customer.pk)
        assert smtp.messages == []
        raise_alert(title="Critical", severity="critical", customer_id=customer.pk)
    assert inbox(smtp) == [(csm.email, f"[ChurnShield] [CRITICAL] 2 alerts about {customer}")]


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        (dt.datetime(2026, 1, 5, 21, 30, tzinfo=dt.UTC), None),  # 22:30 CET, window 23:00–06:00: not yet
        (dt.datetime(2026, 1, 5, 22, 0, tzinfo=dt.UTC), dt.datetime(2026, 1, 6, 5, 0, tzinfo=dt.UTC)),
        (dt.datetime(2026, 1, 6, 3, 0, tzinfo=dt.UTC), dt.datetime(2026, 1, 6, 5, 0, tzinfo=dt.UTC)),
        (dt.datetime(2026, 1, 6, 5, 0, tzinfo=dt.UTC), None),
    ],
)
def test_quiet_hours_wrap_midnight_in_the_users_zone(utc, expected):
    from alerts.notifications.timing import quiet_until

    assert quiet_until(utc, "Europe/Paris", dt.time(23), dt.time(6)) == expected


# --- acknowledge, snooze, auto-resolve ----------------------------------------------------------


def test_acknowledged_alerts_are_left_out_of_pending_notifications(smtp, noise, csm, make_customer, raise_alert):
    noise.group_wait_seconds = 60
    noise.save()
    with time_machine.travel(T0, tick=False) as clock:
        alert = raise_alert(customer_id=make_customer(owner=csm).pk)
        alert_acknowledge(user=csm, alert_id=alert.pk)
        clock.shift(61)
        dispatch_notifications()
    assert smtp.messages == []
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.last_error) == ("skipped", "every alert was acknowledged, snoozed or resolved")


def test_snoozed_group_stays_quiet_until_the_customer_gets_worse(smtp, noise, csm, make_customer, raise_alert):
    customer = make_customer(owner=csm)
    with time_machine.travel(T0, tick=False):
        first = raise_alert(title="First", customer_id=customer.pk)
        alert_snooze(user=csm, alert_id=first.pk, until=T0 + dt.timedelta(hours=4))
        same = raise_alert(title="Same again", customer_id=customer.pk)
        assert (same.status, same.snoozed_until) == ("snoozed", T0 + dt.timedelta(hours=4))
        lesser = raise_alert(title="Lesser", severity="medium", customer_id=customer.pk)
        assert lesser.status == "snoozed"
        assert len(smtp.messages) == 1
        worse = raise_alert(title="Worse", severity="critical", customer_id=customer.pk)
    first.refresh_from_db()
    assert (first.status, first.snoozed_until, worse.status) == ("open", None, "open")
    assert [subject for _, subject in inbox(smtp)][1:] == ["[ChurnShield] [CRITICAL] Worse"]


def test_an_expired_snooze_reopens_and_notifies_again(smtp, noise, csm, make_customer, raise_alert):
    with time_machine.travel(T0, tick=False) as clock:
        alert = raise_alert(title="Snoozed", customer_id=make_customer(owner=csm).pk)
        alert_snooze(user=csm, alert_id=alert.pk, until=T0 + dt.timedelta(hours=1))
        clock.shift(59 * 60)
        dispatch_notifications()
        alert.refresh_from_db()
        assert alert.status == "snoozed" and len(smtp.messages) == 1
        clock.shift(2 * 60)
        dispatch_notifications()
    alert.refresh_from_db()
    assert alert.status == "open"
    assert [subject for _, subject in inbox(smtp)] == ["[ChurnShield] [HIGH] Snoozed"] * 2


def test_risk_and_health_alerts_resolve_when_the_condition_clears(noise, csm, make_customer):
    from customers.models import Customer

    cleared, still_high, medium_cleared, healed, still_sick = (
        make_customer(owner=csm, churn_risk=risk, health_score=health)
        for risk, health in (("0.9000", 70), ("0.9000", 70), ("0.6000", 70), ("0.2", 80), ("0.2", 40))
    )
    specs = [
        (cleared, "risk_rise", {"level": "high"}),
        (still_high, "risk_rise", {"level": "high"}),
        (medium_cleared, "risk_rise", {"level": "medium"}),
        (healed, "health_drop", {"health_before": 75, "health_after": 50}),
        (still_sick, "health_drop", {"health_before": 75, "health_after": 40}),
    ]
    alerts = {
        c.pk: alert_create(title="t", message="m", customer_id=c.pk, source=s, context=ctx) for c, s, ctx in specs
    }
    Customer.objects.filter(pk=cleared.pk).update(churn_risk="0.7900")
    Customer.objects.filter(pk=medium_cleared.pk).update(churn_risk="0.4000")
    assert alerts_resolve_cleared(now=T0) == 3
    status = dict(Alert.objects.values_list("customer_id", "status"))
    assert status == {
        cleared.pk: "resolved",
        still_high.pk: "open",
        medium_cleared.pk: "resolved",
        healed.pk: "resolved",
        still_sick.pk: "open",
    }
    assert Alert.objects.get(pk=alerts[cleared.pk].pk).resolved_at == T0


def test_scoring_resolves_cleared_risk_and_raises_health_drops(noise, csm, make_customer):
    """Through the real scoring path (rules baseline): a quiet, healthy-looking customer scores low."""
    from customers.models import Customer
    from predictions.services.scoring import score_customers

    customer = make_customer(owner=csm, churn_risk="0.9500", health_score=100)
    risk = alert_create(title="t", message="m", customer_id=customer.pk, source="risk_rise", context={"level": "high"})
    score_customers(customer_ids=[customer.pk], trigger="event")
    customer = Customer.objects.get(pk=customer.pk)
    risk.refresh_from_db()
    assert (risk.status == "resolved") == (float(customer.churn_risk) < 0.8)
    drops = list(Alert.objects.filter(source="health_drop", customer=customer))
    assert len(drops) == (1 if customer.health_score <= 80 else 0)
    if drops:
        assert drops[0].context == {"health_before": 100, "health_after": customer.health_score}
        assert drops[0].owner_id == csm.pk


def test_a_delivery_whose_task_was_lost_is_sent_by_the_sweep(smtp, noise, csm, make_customer):
    alert = alert_create(title="Lost", message="m", customer_id=make_customer(owner=csm).pk)
    with time_machine.travel(T0, tick=False) as clock:
        delivery = NotificationDelivery.objects.create(
            alert=alert, channel="email", recipient=csm, status="sending", due_at=T0, grouping_key="k"
        )
        delivery.alerts.add(alert)
        clock.shift(14 * 60)
        dispatch_notifications()
        assert smtp.messages == []  # its task may still be running
        clock.shift(2 * 60)
        dispatch_notifications()
    assert inbox(smtp) == [(csm.email, "[ChurnShield] [MEDIUM] Lost")]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 1)
