"""Each channel's protocol: email (Django's mail framework), Slack (Block Kit) and Teams (Adaptive Card).

A channel takes the recipient and the alerts of one notification and either returns or raises
`TransientDeliveryError` (retried) / `DeliveryError` (failed at once).
"""

import smtplib
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage

from alerts.models import SEVERITY_RANK, Alert
from alerts.notifications import webhooks
from alerts.notifications.errors import DeliveryError, TransientDeliveryError

SEVERITY_EMOJI = {"critical": ":rotating_light:", "high": ":warning:", "medium": ":large_orange_diamond:", "low": ""}
TEAMS_COLOR = {"critical": "Attention", "high": "Warning", "medium": "Accent", "low": "Default"}
MAX_LISTED = 20  # a notification lists this many alerts, then "and N more"


def alert_url(alert: Alert) -> str:
    return f"{settings.NOTIFICATIONS_SITE_URL.rstrip('/')}/admin/alerts/alert/{alert.pk}/change/"


def headline(alerts: Sequence[Alert]) -> str:
    """One line for the subject: the alert's title, or a count and what they are about."""
    if len(alerts) == 1:
        return alerts[0].title
    customer = alerts[0].customer
    about = f" about {customer}" if customer is not None and all(a.customer_id == customer.pk for a in alerts) else ""
    return f"{len(alerts)} alerts{about}"


def _worst(alerts: Sequence[Alert]) -> str:
    return max((a.severity for a in alerts), key=SEVERITY_RANK.__getitem__)


# --- email ------------------------------------------------------------------------------------


def _email_text(alerts: Sequence[Alert], intro: str) -> str:
    lines = [intro, ""]
    for alert in alerts[:MAX_LISTED]:
        customer = f" — {alert.customer}" if alert.customer_id else ""
        lines += [
            f"[{alert.severity.upper()}] {alert.title}{customer}",
            f"  {alert.message}",
            f"  {alert_url(alert)}",
            "",
        ]
    if len(alerts) > MAX_LISTED:
        lines.append(f"… and {len(alerts) - MAX_LISTED} more.")
    lines += ["", "Change what you receive in your notification preferences (/api/notifications/preferences)."]
    return "\n".join(lines)


def _smtp_transient(exc: smtplib.SMTPException) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    code = getattr(exc, "smtp_code", None)
    if code is None:  # disconnected, or could not connect: the server may come back
        return True
    return 400 <= code < 500


def send_email(*, to: str, subject: str, body: str) -> None:
    if not to:
        raise DeliveryError("The recipient has no email address.")
    message = EmailMessage(subject=subject, body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[to])
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPException as exc:
        if _smtp_transient(exc):
            raise TransientDeliveryError(f"SMTP: {exc}") from exc
        raise DeliveryError(f"SMTP: {exc}") from exc
    except OSError as exc:  # refused connection, timeout, TLS failure on the way
        raise TransientDeliveryError(f"SMTP: {type(exc).__name__}: {exc}") from exc


def email_alerts(*, to: str, alerts: Sequence[Alert]) -> None:
    subject = f"[ChurnShield] [{_worst(alerts).upper()}] {headline(alerts)}"
    intro = (
        "A new alert needs your attention:" if len(alerts) == 1 else f"{len(alerts)} new alerts need your attention:"
    )
    send_email(to=to, subject=subject, body=_email_text(alerts, intro))


def email_digest(*, to: str, alerts: Sequence[Alert]) -> None:
    subject = f"[ChurnShield] Daily digest: {len(alerts)} alert{'s' if len(alerts) != 1 else ''}"
    send_email(to=to, subject=subject, body=_email_text(alerts, "Your alerts since the last digest:"))


# --- Slack incoming webhook (Block Kit) -------------------------------------------------------


def slack_payload(alerts: Sequence[Alert]) -> dict[str, Any]:
    """`text` is the fallback shown in notifications; `blocks` the Block Kit message."""
    worst = _worst(alerts)
    title = f"{SEVERITY_EMOJI[worst]} {headline(alerts)}".strip()
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    for alert in alerts[:MAX_LISTED]:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{_slack_escape(alert.title)}* ({alert.severity})\n{_slack_escape(alert.message)}"[:3000],
                },
                "accessory": {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open"},
                    "url": alert_url(alert),
                },
            }
        )
    if len(alerts) > MAX_LISTED:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"… and {len(alerts) - MAX_LISTED} more"}]}
        )
    return {"text": title, "blocks": blocks}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_send(*, url: str, alerts: Sequence[Alert]) -> None:
    webhooks.post_json(url, slack_payload(alerts))


# --- Microsoft Teams incoming webhook (Adaptive Card in a message) ----------------------------


def teams_payload(alerts: Sequence[Alert]) -> dict[str, Any]:
    worst = _worst(alerts)
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": headline(alerts),
            "weight": "Bolder",
            "size": "Medium",
            "color": TEAMS_COLOR[worst],
            "wrap": True,
        }
    ]
    for alert in alerts[:MAX_LISTED]:
        body.append({"type": "TextBlock", "text": f"**{alert.title}** ({alert.severity})", "wrap": True})
        body.append({"type": "TextBlock", "text": alert.message, "wrap": True, "spacing": "None", "isSubtle": True})
    if len(alerts) > MAX_LISTED:
        body.append({"type": "TextBlock", "text": f"… and {len(alerts) - MAX_LISTED} more", "isSubtle": True})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": "Open in ChurnShield", "url": alert_url(alerts[0])}],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def teams_send(*, url: str, alerts: Sequence[Alert]) -> None:
    webhooks.post_json(url, teams_payload(alerts))
