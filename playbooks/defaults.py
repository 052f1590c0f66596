# ruff: noqa: E501
"""The demo's default playbooks, each mapped to the churn causes (predictions/causes.py) it answers.

Safe on day one: every shipped rule that reaches customers fires only for at-risk ones (medium or
high risk; the renewal reminder, which only creates a task for the CSM, fires for every renewal),
the onboarding rule only for accounts that signed up in the last 14 days, no rule enrols anyone before
a manager's go-ahead on its dry run, and customer e-mails wait for review (no playbook auto-sends).
"""

from typing import Any

from playbooks.services import playbooks_import

AT_RISK = {"riskLevel": ["medium", "high"]}
NEW_ACCOUNT_DAYS = 14

DEFAULT_PLAYBOOKS: list[dict[str, Any]] = [
    {
        "name": "Executive Check-in",
        "description": "High-level outreach when an account turns high-risk or unhappy.",
        "intervention_type": "Executive Check-in",
        "causes": ["Low satisfaction", "Low engagement"],
        "holdout_share": 0.1,
        "reenrol_days": 60,
        # Released once back in the low band: the bands follow the champion's thresholds, where a
        # fixed probability would release everyone at once on a calibrated book of low base rate.
        "exit_conditions": [{"field": "risk_level", "op": "eq", "value": "low"}],
        "steps": [
            {
                "key": "task",
                "type": "create_intervention",
                "intervention_type": "Executive Check-in",
                "priority": "high",
                "assignee": "owner",
                "description": "Book an executive call with {{ customer.company }} ({{ customer.churn_risk }} churn risk).",
            },
            {
                "key": "tell",
                "type": "notify",
                "channel": "in_app",
                "severity": "high",
                "message": "Executive check-in started for {{ customer.name }}.",
            },
            {"key": "wait", "type": "wait", "duration": "7d"},
            {
                "key": "check",
                "type": "condition",
                "if": {"field": "intervention_outcome", "op": "eq", "value": "open"},
                "then": "nudge",
                "else": "end",
            },
            {
                "key": "nudge",
                "type": "create_alert",
                "severity": "medium",
                "title": "Executive check-in still open: {{ customer.name }}",
                "message": "The check-in for {{ customer.company }} has been open for a week.",
            },
        ],
        "rules": [
            {"kind": "risk_enters_high", "params": {}, "segment": AT_RISK},
            {"kind": "cause_appears", "params": {"cause": "Low satisfaction"}, "segment": AT_RISK},
        ],
    },
    {
        "name": "Payment Recovery",
        "description": "Resolve failed payments with the billing contact.",
        "intervention_type": "Payment Recovery",
        "causes": ["Payment problems"],
        "holdout_share": 0.0,
        "reenrol_days": 14,
        "exit_conditions": [],
        "steps": [
            {
                "key": "task",
                "type": "create_intervention",
                "intervention_type": "Payment Recovery",
                "priority": "high",
                "assignee": "owner",
                "description": "Confirm the card and billing contact of {{ customer.company }}.",
            },
            {
                "key": "email",
                "type": "send_email",
                "to": "customer",
                "subject": "Action needed: your {{ customer.plan }} subscription payment",
                "body": "Hello {{ customer.name }},\n\nYour last payment did not go through. "
                "Please update your card so your service continues.\n",
            },
            {"key": "wait", "type": "wait", "duration": "3d"},
            {
                "key": "escalate",
                "type": "create_alert",
                "severity": "high",
                "title": "Payment still failing? {{ customer.name }}",
                "message": "Three days after the payment reminder: check {{ customer.company }}'s billing.",
            },
        ],
        "rules": [
            {"kind": "failed_payment", "params": {"days": 1}, "segment": AT_RISK},
            {"kind": "cause_appears", "params": {"cause": "Payment problems"}, "segment": AT_RISK},
        ],
    },
    {
        "name": "Support Escalation",
        "description": "Escalate open tickets and follow up personally.",
        "intervention_type": "Support Escalation",
        "causes": ["Support issues"],
        "holdout_share": 0.1,
        "reenrol_days": 30,
        "exit_conditions": [{"field": "support_tickets", "op": "eq", "value": 0}],
        "steps": [
            {
                "key": "task",
                "type": "create_intervention",
                "intervention_type": "Support Escalation",
                "priority": "high",
                "assignee": "least_loaded",
                "description": "Review {{ customer.company }}'s open tickets with support.",
            },
            {
                "key": "tell",
                "type": "notify",
                "channel": "slack",
                "severity": "high",
                "message": "Support escalation for {{ customer.name }}: many or escalating tickets.",
            },
            {
                "key": "wait",
                "type": "wait",
                "until": {"field": "support_tickets", "op": "eq", "value": 0},
                "timeout": "5d",
                "check_every": "6h",
            },
            {
                "key": "check",
                "type": "condition",
                "if": {"field": "support_tickets", "op": "gt", "value": 0},
                "then": "alert",
                "else": "end",
            },
            {
                "key": "alert",
                "type": "create_alert",
                "severity": "high",
                "title": "Tickets still open: {{ customer.name }}",
                "message": "Five days after escalation {{ customer.company }} still has open tickets.",
            },
        ],
        "rules": [{"kind": "cause_appears", "params": {"cause": "Support issues"}, "segment": AT_RISK}],
    },
    {
        "name": "Product Training",
        "description": "Training on the features the account does not use (feature adoption).",
        "intervention_type": "Product Training",
        "causes": ["Low feature adoption", "Declining usage"],
        "holdout_share": 0.2,
        "reenrol_days": 90,
        "exit_conditions": [],
        "steps": [
            {
                "key": "email",
                "type": "send_email",
                "to": "customer",
                "subject": "Get more out of {{ customer.plan }}",
                "body": "Hello {{ customer.name }},\n\nWe'd love to show your team the features you are not using yet.\n",
            },
            {"key": "wait", "type": "wait", "duration": "5d"},
            {
                "key": "task",
                "type": "create_intervention",
                "intervention_type": "Product Training",
                "priority": "medium",
                "assignee": "owner",
                "description": "Run a training session for {{ customer.company }}.",
            },
        ],
        "rules": [
            {"kind": "cause_appears", "params": {"cause": "Low feature adoption"}, "segment": AT_RISK},
            {"kind": "cause_appears", "params": {"cause": "Declining usage"}, "segment": AT_RISK},
        ],
    },
    {
        "name": "Renewal Reminder",
        "description": "Review value delivered ahead of the renewal.",
        "intervention_type": "Renewal Reminder",
        "causes": [],
        "holdout_share": 0.0,
        "reenrol_days": 180,
        "exit_conditions": [],
        "steps": [
            {
                "key": "task",
                "type": "create_intervention",
                "intervention_type": "Renewal Reminder",
                "priority": "medium",
                "assignee": "owner",
                "due_in_days": 14,
                "description": "Prepare the value review for {{ customer.company }}'s renewal.",
            },
            {
                "key": "tell",
                "type": "notify",
                "channel": "in_app",
                "severity": "low",
                "message": "Renewal review due for {{ customer.name }}.",
            },
        ],
        "rules": [{"kind": "renewal_within", "params": {"days": 60}, "segment": {}}],
    },
    {
        "name": "Onboarding Call",
        "description": "Walk a new account through setup to first value.",
        "intervention_type": "Onboarding Call",
        "causes": ["Onboarding incomplete"],
        "holdout_share": 0.0,
        "reenrol_days": 365,
        "exit_conditions": [],
        "steps": [
            {
                "key": "task",
                "type": "create_intervention",
                "intervention_type": "Onboarding Call",
                "priority": "medium",
                "assignee": "owner",
                "description": "Book the onboarding call with {{ customer.company }}.",
            },
            {
                "key": "email",
                "type": "send_email",
                "to": "customer",
                "subject": "Welcome aboard, {{ customer.company }}",
                "body": "Hello {{ customer.name }},\n\nLet's get you set up: reply to book your onboarding call.\n",
            },
        ],
        "rules": [
            {
                "kind": "cause_appears",
                "params": {"cause": "Onboarding incomplete"},
                "segment": {**AT_RISK, "signupWithinDays": NEW_ACCOUNT_DAYS},
            }
        ],
    },
]


def seed_default_playbooks() -> dict[str, int]:
    """Create or update the default playbooks (idempotent)."""
    return playbooks_import(documents=DEFAULT_PLAYBOOKS)
