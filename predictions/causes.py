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
