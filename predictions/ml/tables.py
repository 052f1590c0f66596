"""The input of the ML core: time-stamped facts as pandas frames (one frame per table).

Every timestamp column is a timezone-aware UTC `datetime64[ns, UTC]`. The Django side
(`predictions/data.py`) builds these from the database with bulk reads; tests build them by hand.
"""

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Tables:
    # customer_id (int), signup_date, plan (str), mrr (float), churned_at (NaT if active),
    # feature_usage (dict of str -> number or text, the customer's current counters); optional
    # snapshot columns: is_active (False = churned, date unknown), last_login, nps_score,
    # support_tickets (read only for a book without event history)
    customers: pd.DataFrame
    # customer_id, started_at, ended_at (NaT allowed), pages_viewed (int), n_actions (int);
    # optional weight: how many sessions the row stands for (a load's "latest earlier" row)
    sessions: pd.DataFrame
    # customer_id, opened_at, solved_at (NaT if open), priority (low/normal/high/urgent)
    tickets: pd.DataFrame
    # customer_id, responded_at, score (0-10)
    nps: pd.DataFrame
    # customer_id, occurred_at, kind (payment_succeeded/payment_failed/subscription_changed/
    # subscription_cancelled), amount (float), mrr_after (float, NaN if none)
    billing: pd.DataFrame
    # customer_id, created_at, completed_at (NaT), outcome (succeeded/failed/None)
    interventions: pd.DataFrame
    # customer_id, at (the session's start), type (str), count (float): one row per action of a
    # session's `actions` list (or per type of a load's older sessions, count summed, `at` latest)
    actions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["customer_id", "at", "type", "count"]))
