"""How product events are grouped into sessions: one rule for the live Segment feed and the history import."""

import datetime as dt


def session_key(user_id: str, at: dt.datetime, session_id: str | None = None) -> str:
    """The session an event belongs to: the source's session id, else its user's hour.

    The Segment connector and the history import's `events` files both group with this rule, so
    a book imported as events gives the sessions the live feed would have built.
    """
    if session_id:
        return str(session_id)
    return f"{user_id}:{at:%Y-%m-%dT%H}"
