"""What each step type does. Internal steps change only our database and run inside the caller's
transaction (effect and step record commit together); external steps (`send_email`, `webhook`) call
outside services with an idempotency key and classify failures as transient or permanent."""

import datetime as dt
import hashlib
import hmac
import json
import logging
import smtplib
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection

from alerts.models import Alert
from alerts.notifications import webhooks
from alerts.notifications.errors import DeliveryError, UnsafeWebhookURL
from alerts.services import alert_create
from customers.models import Customer
from customers.selectors import risk_level
from customers.services import customer_fields_set
from interventions.models import Intervention
from interventions.selectors import open_interventions_per_assignee
from interventions.services import intervention_record, intervention_task_fill
from playbooks.definitions import duration_seconds, render_template

logger = logging.getLogger(__name__)


def raise_alert(
    *,
    title: str,
    message: str,
    severity: str,
    customer_id: int | None,
    source: str = Alert.Source.OTHER,
    owner_id: int | None = None,
    context: dict[str, Any] | None = None,
) -> Any:
    """An alert through the notification system (in-app feed, then email/Slack/Teams per each
    recipient's preferences). The default grouping key, `customer:<id>`, lets a playbook's alerts
    and the customer's other alerts within the group window become one notification. `owner_id`
    is already loaded with the execution: passing it spares alert_create a lookup."""
    return alert_create(
        title=title,
        message=message,
        severity=severity,
        customer_id=customer_id,
        source=source,
        owner_id=owner_id,
        context=context,
    )


class TransientStepError(Exception):
    """Worth retrying with backoff (timeouts, connection errors, 5xx/429, SMTP 4xx)."""


class PermanentStepError(Exception):
    """Retrying will not help (4xx, refused recipient, unknown user): the execution fails."""


@dataclass
class Outcome:
    """What a step did: its output, the next step (None = the default), or a wait until `due_at`."""

    output: dict = field(default_factory=dict)
    next: str | None = None
    due_at: dt.datetime | None = None


# --- Conditions ---------------------------------------------------------------------------------


def customer_context(customer: Customer, intervention: Intervention | None, now: dt.datetime) -> dict:
    last_login = customer.last_login
    return {
        "risk": float(customer.churn_risk),
        "risk_level": risk_level(float(customer.churn_risk)),
        "health": customer.health_score,
        "plan": customer.plan,
        "mrr": float(customer.mrr),
        "nps": customer.nps_score,
        "support_tickets": customer.support_tickets,
        "days_since_login": (now - last_login).days if last_login else None,
        "is_active": customer.is_active,
        "intervention_outcome": _intervention_state(intervention),
    }


def _intervention_state(intervention: Intervention | None) -> str:
    if intervention is None:
        return "none"
    if intervention.outcome:
        return intervention.outcome
    return "open" if intervention.status in Intervention.OPEN_STATUSES else intervention.status


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op in ("in", "not_in"):
        found = actual in expected
        return found if op == "in" else not found
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if actual is None or expected is None:
        return False
    try:
        return {"lt": actual < expected, "lte": actual <= expected, "gt": actual > expected, "gte": actual >= expected}[
            op
        ]
    except TypeError:
        return False


def condition_holds(condition: dict, context: dict) -> bool:
    if "all" in condition:
        return all(condition_holds(item, context) for item in condition["all"])
    if "any" in condition:
        return any(condition_holds(item, context) for item in condition["any"])
    return _compare(context.get(condition["field"]), condition.get("op", "eq"), condition["value"])


def template_context(customer: Customer, playbook_name: str) -> dict:
    owner = customer.owner
    return {
        "customer": {
            "id": customer.pk,
            "name": customer.name,
            "email": customer.email,
            "company": customer.company,
            "plan": customer.plan,
            "mrr": str(customer.mrr),
            "health_score": customer.health_score,
            "churn_risk": f"{float(customer.churn_risk) * 100:.0f}%",
            "owner": (owner.get_full_name() or owner.get_username()) if owner else "",
        },
        "playbook": playbook_name,
    }


# --- Internal steps (inside the caller's transaction) -------------------------------------------


def _owner_name(customer: Customer) -> str:
    owner = customer.owner
    return (owner.get_full_name() or owner.get_username()) if owner else ""


def _least_loaded_csm() -> str:
    """The CSM with the fewest open interventions assigned to them (by name), ties by id."""
    csms = list(get_user_model().objects.filter(groups__name="csm", is_active=True).order_by("id"))
    if not csms:
        return ""
    names = {user.pk: (user.get_full_name() or user.get_username()) for user in csms}
    load = open_interventions_per_assignee(list(names.values()))
    chosen = min(csms, key=lambda user: (load.get(names[user.pk], 0), user.pk))
    return names[chosen.pk]


def create_intervention(execution: Any, step: dict, now: dt.datetime) -> Outcome:
    customer = execution.customer
    rule = step.get("assignee", "owner")
    assignee = {"owner": lambda: _owner_name(customer), "least_loaded": _least_loaded_csm}.get(
        rule, lambda: step.get("assignee_name", "")
    )()
    description = render_template(step.get("description", ""), template_context(customer, execution.playbook.name))
    # Every task gets a due date, or nothing would ever show it as due today or overdue.
    due = now + dt.timedelta(days=step.get("due_in_days", settings.PLAYBOOK_TASK_DUE_DAYS))
    # The trigger endpoint answers with an intervention id at once; the first create_intervention
    # step of that execution works on that intervention instead of creating a second one.
    adopted = execution.intervention_id and not execution.result.get("interventionAdopted")
    if adopted:
        intervention = intervention_task_fill(
            intervention=execution.intervention,
            priority=step.get("priority", execution.intervention.priority),
            assigned_csm=assignee,
            description=description,
            due_date=due,
        )
        execution.result["interventionAdopted"] = True
    else:
        intervention = intervention_record(
            customer=customer,
            created_by_id=execution.triggered_by_id,
            type=step["intervention_type"],
            priority=step.get("priority", "medium"),
            assigned_csm=assignee,
            description=description,
            due_date=due,
            notes=f"Created by playbook {execution.playbook.name} (execution {execution.pk}).",
        )
        if execution.intervention_id is None:
            execution.intervention = intervention
            execution.result["interventionAdopted"] = True
    return Outcome(output={"interventionId": intervention.pk, "assignedCsm": intervention.assigned_csm})


def notify(execution: Any, step: dict, now: dt.datetime) -> Outcome:
    # In-app is an alert row (the WebSocket feed shows it); Slack/Teams/e-mail delivery is the
    # notification system's fan-out of that same alert, limited to the step's channel
    # (the recipient's own webhook or address for it; in_app sends nothing outside).
    customer = execution.customer
    channel = step.get("channel", "in_app")
    message = render_template(step["message"], template_context(customer, execution.playbook.name))
    alert = raise_alert(
        title=f"{execution.playbook.name}: {customer.name}",
        message=message,
        severity=step.get("severity", "medium"),
        customer_id=customer.pk,
        owner_id=customer.owner_id,
        context={"channels": [] if channel == "in_app" else [channel]},
    )
    return Outcome(output={"alertId": alert.pk, "channel": channel})


def create_alert(execution: Any, step: dict, now: dt.datetime) -> Outcome:
    context = template_context(execution.customer, execution.playbook.name)
    alert = raise_alert(
        title=render_template(step["title"], context),
        message=render_template(step["message"], context),
        severity=step.get("severity", "high"),
        customer_id=execution.customer_id,
        owner_id=execution.customer.owner_id,
    )
    return Outcome(output={"alertId": alert.pk})


def update_customer(execution: Any, step: dict, now: dt.datetime) -> Outcome:
    values: dict[str, Any] = {}
    for name, value in step["fields"].items():
        if name == "owner":
            owner = get_user_model().objects.filter(username=value, is_active=True).first()
            if owner is None:
                raise PermanentStepError(f"update_customer: no active user named {value!r}")
            value = owner
        values[name] = value
    customer_fields_set(customer=execution.customer, values=values)
    return Outcome(output={"changed": step["fields"]})


def condition(execution: Any, step: dict, now: dt.datetime) -> Outcome:
    holds = condition_holds(step["if"], customer_context(execution.customer, execution.intervention, now))
    branch = "then" if holds else "else"
    return Outcome(output={"result": holds, "branch": branch}, next=step.get(branch))


def wait_due(step: dict, started: dt.datetime, now: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
    """(next check, final deadline) of a wait that started at `started`."""
    if "duration" in step:
        due = started + dt.timedelta(seconds=duration_seconds(step["duration"]))
        return due, due
    deadline = started + dt.timedelta(seconds=duration_seconds(step["timeout"]))
    every = dt.timedelta(seconds=duration_seconds(step.get("check_every", "1h")))
    return min(now + every, deadline), deadline


INTERNAL_HANDLERS = {
    "create_intervention": create_intervention,
    "notify": notify,
    "create_alert": create_alert,
    "update_customer": update_customer,
    "condition": condition,
}


# --- External steps (outside any transaction) ---------------------------------------------------


def idempotency_key(execution_id: int, step_key: str) -> str:
    return f"playbook-{execution_id}-{step_key}"


def email_address(step: dict, customer: Customer) -> str:
    return {"customer": customer.email, "owner": customer.owner.email if customer.owner else ""}.get(
        step["to"], step["to"]
    )


def is_customer_facing(step: dict, customer: Customer) -> bool:
    """Whether an e-mail step writes to someone outside the team: the customer, or any address that
    is not an active user's (an explicit address is presumed external unless it is a colleague's)."""
    if step.get("type") != "send_email" or step["to"] == "owner":
        return False
    if step["to"] == "customer":
        return True
    return not get_user_model().objects.filter(email__iexact=step["to"], is_active=True).exists()


def render_email(*, customer: Customer, playbook_name: str, step: dict) -> dict:
    """The e-mail as it would go out: `{to, subject, body}`."""
    context = template_context(customer, playbook_name)
    return {
        "to": email_address(step, customer),
        "subject": render_template(step["subject"], context).replace("\n", " ")[:500],
        "body": render_template(step["body"], context),
    }


def send_email(*, customer: Customer, playbook_name: str, step: dict, key: str) -> dict:
    """Send the step's e-mail; `step["rendered"]` (a reviewed, maybe edited text) wins over the templates."""
    content = step.get("rendered") or render_email(customer=customer, playbook_name=playbook_name, step=step)
    to = content["to"]
    if not to:
        raise PermanentStepError(f"send_email: no address for {step['to']}")
    message = EmailMessage(
        subject=content["subject"].replace("\n", " ")[:500],
        body=content["body"],
        to=[to],
        headers={"X-Idempotency-Key": key, "Message-ID": f"<{key}@churnshield>"},
        connection=get_connection(timeout=settings.PLAYBOOK_EMAIL_TIMEOUT_SECONDS),
    )
    try:
        message.send()
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise PermanentStepError(f"send_email: refused: {exc}") from exc
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise TransientStepError(f"send_email: SMTP {exc.smtp_code}") from exc
        raise PermanentStepError(f"send_email: SMTP {exc.smtp_code}") from exc
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise TransientStepError(f"send_email: {type(exc).__name__}: {exc}") from exc
    return {"to": to, "idempotencyKey": key}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>` (the receiver checks both, so a replay is detectable)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


WEBHOOK_REFUSED = "webhook: refused: the URL must be https and reach a public address"
WEBHOOK_FAILED = "webhook: delivery failed (no response)"


def webhook(*, customer: Customer, playbook_name: str, step: dict, key: str, execution_id: int) -> dict:
    body = json.dumps(
        {
            "event": "playbook.step",
            "idempotencyKey": key,
            "executionId": execution_id,
            "step": step["key"],
            "playbook": playbook_name,
            "customer": {
                "id": customer.pk,
                "name": customer.name,
                "email": customer.email,
                "company": customer.company,
                "plan": customer.plan,
                "mrr": str(customer.mrr),
                "churnProbability": float(customer.churn_risk),
                "healthScore": customer.health_score,
            },
            "payload": step.get("payload", {}),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ChurnShield-Playbooks/1",
        "Idempotency-Key": key,
        "X-ChurnShield-Timestamp": timestamp,
        "X-ChurnShield-Signature": "v1=" + sign(settings.PLAYBOOK_WEBHOOK_SECRET, timestamp, body),
    }
    try:
        response = webhooks.post(
            step["url"],
            body,
            headers,
            timeout=step.get("timeout", 10),
            allow_loopback=settings.PLAYBOOK_WEBHOOK_ALLOW_LOOPBACK,
        )
    except UnsafeWebhookURL as exc:
        # The caller reads this error back: it must not tell which internal names resolve.
        logger.warning("playbook webhook refused: execution %s step %s: %s", execution_id, step["key"], exc)
        raise PermanentStepError(WEBHOOK_REFUSED) from exc
    except DeliveryError as exc:
        # Nor whether a port is closed, filtered or speaks something else: detail in the logs only.
        logger.warning("playbook webhook failed: execution %s step %s: %s", execution_id, step["key"], exc)
        raise TransientStepError(WEBHOOK_FAILED) from exc
    if response.status in (408, 425, 429) or response.status >= 500:
        raise TransientStepError(f"webhook: HTTP {response.status}")
    if response.status >= 300:  # a redirect is never followed: it could point anywhere
        raise PermanentStepError(f"webhook: HTTP {response.status}")
    return {"status": response.status, "idempotencyKey": key}


def run_external(execution: Any, step: dict) -> dict:
    key = idempotency_key(execution.pk, step["key"])
    if step["type"] == "send_email":
        return send_email(customer=execution.customer, playbook_name=execution.playbook.name, step=step, key=key)
    return webhook(
        customer=execution.customer,
        playbook_name=execution.playbook.name,
        step=step,
        key=key,
        execution_id=execution.pk,
    )
