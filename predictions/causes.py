"""The catalogue of churn causes we can detect, each with the category the app groups it under."""

from typing import NamedTuple


class CauseInfo(NamedTuple):
    category: str
    description: str


CAUSES: dict[str, CauseInfo] = {
    "Low engagement": CauseInfo("product", "Few or no logins and sessions recently"),
    "Declining usage": CauseInfo("product", "Usage in the last 30 days is well below the 30 days before"),
    "Low feature adoption": CauseInfo("product", "Only a few product features are in use"),
    "Support issues": CauseInfo("support", "Many or escalating support tickets"),
    "Low satisfaction": CauseInfo("other", "Low or falling NPS answers"),
    "Payment problems": CauseInfo("billing", "Failed payments or a downgrade"),
    "Onboarding incomplete": CauseInfo("product", "A new account that has not reached first value"),
}


ACTIONS: dict[str, list[str]] = {
    "Low engagement": ["Schedule a re-engagement call", "Share a usage review with the champion"],
    "Declining usage": ["Review the usage drop with the account", "Offer a workflow workshop"],
    "Low feature adoption": ["Book product training on unused features"],
    "Support issues": ["Activate the priority support channel", "Escalate open tickets"],
    "Low satisfaction": ["Schedule an executive check-in", "Run a feedback session"],
    "Payment problems": ["Start payment recovery", "Confirm billing contact and card"],
    "Onboarding incomplete": ["Book an onboarding call"],
}


def impact_percent(share: object) -> float:
    """A cause's stored impact (its 0-1 share of the risk) as the percent every response shows."""
    try:
        return round(100 * float(share or 0), 1)
    except (TypeError, ValueError):
        return 0.0


def percent_causes(top_causes: list[dict]) -> list[dict]:
    """Stored causes with `impact` in percent, for responses that return them whole."""
    return [{**cause, "impact": impact_percent(cause.get("impact"))} for cause in top_causes if isinstance(cause, dict)]


def recommended_actions(top_causes: list[dict], risk_level: str) -> list[str]:
    """Actions for a prediction's causes, most important first, without repeats."""
    actions: list[str] = []
    if risk_level == "high":
        actions.append("Schedule immediate executive check-in")
    for cause in top_causes:
        for action in ACTIONS.get(str(cause.get("cause")), []):
            if action not in actions:
                actions.append(action)
    return actions[:4]
