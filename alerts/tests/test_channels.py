"""Email against a real SMTP server, Slack and Teams against a real HTTP receiver, and the SSRF guard."""

import socket

import pytest

from alerts.models import NotificationDelivery
from alerts.notifications import dispatch
from alerts.notifications.errors import UnsafeWebhookURL
from alerts.notifications.webhooks import webhook_target
from alerts.services import alert_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def raise_alert(django_capture_on_commit_callbacks):
    def raise_(**fields):
        with django_capture_on_commit_callbacks(execute=True):
            return alert_create(**{"title": "High churn risk: Acme", "message": "Risk rose to 91%.", **fields})

    return raise_


def deliveries(channel: str) -> list[NotificationDelivery]:
    return list(NotificationDelivery.objects.filter(channel=channel).order_by("pk"))


# --- email --------------------------------------------------------------------------------------


def test_alert_is_emailed_to_the_owning_csm_over_smtp(smtp, noise, csm, make_customer, raise_alert):
    customer = make_customer(owner=csm, name="Acme")
    alert = raise_alert(severity="high", customer_id=customer.pk, source="risk_rise")
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert message["X-Envelope-To"] == csm.email
    assert message["Subject"] == "[ChurnShield] [HIGH] High churn risk: Acme"
    body = message.get_payload(decode=True).decode()
    assert "Risk rose to 91%." in body and f"/admin/alerts/alert/{alert.pk}/change/" in body
    (delivery,) = deliveries("email")
    assert (delivery.alert_id, delivery.recipient_id, delivery.status, delivery.attempts, delivery.last_error) == (
        alert.pk,
        csm.pk,
        "sent",
        1,
        "",
    )
    assert delivery.sent_at is not None


def test_smtp_4xx_is_retried_then_delivered(smtp, noise, csm, make_customer, raise_alert):
    smtp.replies.append("451 4.3.0 Mailbox busy, try later")
    raise_alert(severity="high", customer_id=make_customer(owner=csm).pk)
    (delivery,) = deliveries("email")
    assert (delivery.status, delivery.attempts, len(smtp.messages)) == ("sent", 2, 1)


def test_smtp_5xx_fails_at_once_with_the_error(smtp, noise, csm, make_customer, raise_alert):
    smtp.replies.append("550 5.1.1 No such user")
    raise_alert(severity="high", customer_id=make_customer(owner=csm).pk)
    (delivery,) = deliveries("email")
    assert (delivery.status, delivery.attempts, smtp.messages) == ("failed", 1, [])
    assert "No such user" in delivery.last_error


def test_smtp_server_down_is_transient_and_gives_up_after_max_attempts(
    settings, noise, csm, make_customer, raise_alert
):
    from tests.live.conftest import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", free_port(), False
    noise.max_attempts = 3
    noise.save()
    raise_alert(severity="high", customer_id=make_customer(owner=csm).pk)
    (delivery,) = deliveries("email")
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert delivery.last_error.startswith("gave up after 3 attempts")


# --- Slack and Teams ----------------------------------------------------------------------------


def test_slack_gets_a_block_kit_message(receiver, noise, csm, make_customer, prefs, raise_alert):
    prefs(csm, email_enabled=False, slack_webhook_url=receiver.url("/services/T0/B0/xyz"))
    alert = raise_alert(severity="critical", customer_id=make_customer(owner=csm, name="Acme").pk)
    (request,) = receiver.received
    assert request.path == "/services/T0/B0/xyz"
    assert request.headers["Content-Type"] == "application/json"
    body = request.body
    assert body["text"] == ":rotating_light: High churn risk: Acme"
    header, section = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":rotating_light: High churn risk: Acme"},
    }
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"] == "*High churn risk: Acme* (critical)\nRisk rose to 91%."
    assert section["accessory"]["url"].endswith(f"/admin/alerts/alert/{alert.pk}/change/")
    assert [(d.status, d.attempts) for d in deliveries("slack")] == [("sent", 1)]


def test_teams_gets_an_adaptive_card(receiver, noise, csm, make_customer, prefs, raise_alert):
    prefs(csm, email_enabled=False, teams_webhook_url=receiver.url("/webhookb2/abc"))
    raise_alert(severity="high", customer_id=make_customer(owner=csm).pk)
    (request,) = receiver.received
    assert request.body["type"] == "message"
    (attachment,) = request.body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == "High churn risk: Acme" and card["body"][0]["color"] == "Warning"
    assert card["body"][1]["text"] == "**High churn risk: Acme** (high)"
    assert card["actions"][0]["type"] == "Action.OpenUrl"
    assert [(d.status, d.attempts) for d in deliveries("teams")] == [("sent", 1)]


@pytest.mark.parametrize("channel", ["slack", "teams"])
def test_5xx_and_429_are_retried_until_delivered(channel, receiver, noise, csm, make_customer, prefs, raise_alert):
    prefs(csm, email_enabled=False, **{f"{channel}_webhook_url": receiver.url()})
    receiver.script.extend([(500, {}), (429, {"Retry-After": "1"}), (503, {})])
    raise_alert(severity="high", customer_id=make_customer(owner=csm).pk)
    assert len(receiver.received) == 4
    assert receiver.received[0].body == receiver.received[3].body  # the same notification, resent
    (delivery,) = deliveries(channel)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 4, "")


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_4xx_is_not_retried(status, receiver, noise, csm, make_customer, prefs, raise_alert):
    prefs(csm, email_enabled=False, slack_webhook_url=receiver.url())
    receiver.script.append((status, {}))
    raise_alert(severity="high", customer_id=make_customer(owner=csm).pk)
    assert len(receiver.received) == 1
    (delivery,) = deliveries("slack")
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 1, f"HTTP {status}: error")


def test_retry_backoff_grows_with_jitter_and_honours_retry_after(receiver, noise, csm, make_customer, prefs, settings):
    """The service's own schedule, one attempt at a time (a worker would wait `retry_in`)."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    prefs(csm, email_enabled=False, slack_webhook_url=receiver.url())
    noise.retry_backoff_seconds, noise.retry_backoff_max_seconds, noise.max_attempts = 10, 1000, 6
    noise.save()
    from alerts.notifications.fanout import notifications_fan_out

    alert = alert_create(title="t", message="m", severity="high", customer_id=make_customer(owner=csm).pk)
    notifications_fan_out(alert_ids=[alert.pk])
    (delivery_id,) = dispatch.deliveries_claim_due()
    receiver.script.extend([(500, {})] * 4 + [(429, {"Retry-After": "900"})])
    waits = [dispatch.delivery_send(delivery_id=delivery_id).retry_in for _ in range(5)]
    for attempt, wait in enumerate(waits[:4]):
        assert 0 <= wait <= 10 * 2**attempt  # full jitter below the exponential cap
    assert waits[4] >= 900  # Retry-After wins over a shorter backoff
    assert dispatch.delivery_send(delivery_id=delivery_id).status == "sent"
    assert NotificationDelivery.objects.get(pk=delivery_id).attempts == 6


def test_a_redirect_is_not_followed(receiver, noise, csm, make_customer, prefs, raise_alert):
    prefs(csm, email_enabled=False, slack_webhook_url=receiver.url("/a"))
    receiver.script.append((302, {"Location": receiver.url("/internal")}))
    raise_alert(severity="high", customer_id=make_customer(owner=csm).pk)
    assert [r.path for r in receiver.received] == ["/a"]
    assert deliveries("slack")[0].status == "failed"


# --- SSRF guard ---------------------------------------------------------------------------------

REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture
def dns(monkeypatch):
    """Names in `records` resolve to the given addresses (the outside DNS, faked at the socket call)."""
    records: dict[str, list[str]] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host in records:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in records[host]
            ]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return records


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.0.0.5/hook",
        "https://172.16.3.4/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://[::1]/hook",
        "https://[fc00::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://localhost/hook",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(url):
    with pytest.raises(UnsafeWebhookURL, match="non-public address"):
        webhook_target(url)


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        (["10.1.2.3"], True),
        (["192.168.10.10"], True),
        (["93.184.216.34", "172.20.0.1"], True),  # one private answer is enough to refuse
        (["169.254.169.254"], True),
        (["fd12::1"], True),
        (["93.184.216.34"], False),
    ],
)
def test_dns_names_are_checked_after_resolution(dns, addresses, refused):
    dns["hooks.example.test"] = addresses
    if refused:
        with pytest.raises(UnsafeWebhookURL):
            webhook_target("https://hooks.example.test/services/x")
    else:
        target = webhook_target("https://hooks.example.test/services/x?y=1")
        assert (target.host, target.port, target.path, target.address) == (
            "hooks.example.test",
            443,
            "/services/x?y=1",
            "93.184.216.34",
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.test/x",
        "ftp://hooks.example.test/x",
        "https://user:pw@hooks.example.test/x",
        "nonsense",
        "",
    ],
)
def test_only_plain_https_urls_are_accepted(dns, url):
    dns["hooks.example.test"] = ["93.184.216.34"]
    with pytest.raises(UnsafeWebhookURL):
        webhook_target(url)


def test_the_loopback_setting_lets_only_loopback_through(settings):
    settings.NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK = True
    assert webhook_target("http://127.0.0.1:9/x").address == "127.0.0.1"
    for url in ("http://10.0.0.1/x", "https://192.168.1.1/x", "https://169.254.169.254/"):
        with pytest.raises(UnsafeWebhookURL):
            webhook_target(url)


def test_unsafe_urls_are_refused_when_saved(dns, csm, api_for):
    dns["hooks.example.test"] = ["10.0.0.7"]
    for field, url in (("slackWebhookUrl", "https://hooks.example.test/x"), ("teamsWebhookUrl", "http://127.0.0.1/")):
        response = api_for(csm).put("/api/notifications/preferences", {field: url}, format="json")
        assert response.status_code == 400, response.content
        assert list(response.json()["errors"]) == [field]
    from alerts.models import NotificationPreference

    assert not NotificationPreference.objects.exists()


def test_unsafe_urls_are_refused_again_when_sending(
    dns, receiver, noise, settings, csm, make_customer, prefs, raise_alert
):
    """DNS can change between save and send: the name now points at loopback, so nothing is sent."""
    dns["hooks.rebind.test"] = ["127.0.0.1"]
    prefs(csm, email_enabled=False, slack_webhook_url=f"http://hooks.rebind.test:{receiver.port}/x")
    settings.NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK = False
    raise_alert(severity="high", customer_id=make_customer(owner=csm).pk)
    assert receiver.received == []
    (delivery,) = deliveries("slack")
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "non-public address (127.0.0.1)" in delivery.last_error
