"""The input of the ML core: time-stamped facts, one table per kind of fact.

A table is a pandas frame or a `Columns` (the same columns as arrays, no frame). Every timestamp
column is timezone-aware UTC (`datetime64[ns, UTC]`). The Django side (`predictions/data.py`)
builds them from the database with bulk reads — frames for a book, `Columns` for one customer,
whose pandas frames would cost more than its features — and tests build them by hand. The
feature code (`predictions.ml.features`) reads both the same way, column by column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


class Columns:
    """A read-only table of equal-length 1-D arrays (numpy, or pandas' own arrays for times):
    what a frame holds, without building one. Building a pandas frame, and a Series for each
    column read, has a fixed cost per call (tens of microseconds to a millisecond under load)
    that a batch of one pays per table and per column; reading an array does not.

    Enough of a frame's reading interface for the feature code and for anyone inspecting a
    table (`columns`, `len`, `empty`, `in`, `[name]` as a Series, `index`); `to_frame()` for
    the rest."""

    __slots__ = ("_arrays", "_length")

    def __init__(self, arrays: Mapping[str, Any]):
        self._arrays = dict(arrays)
        lengths = {len(values) for values in self._arrays.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._length = lengths.pop() if lengths else 0

    @property
    def columns(self) -> pd.Index:
        return pd.Index(list(self._arrays))

    @property
    def index(self) -> pd.RangeIndex:
        return pd.RangeIndex(self._length)

    @property
    def empty(self) -> bool:
        return self._length == 0 or not self._arrays

    def __len__(self) -> int:
        return self._length

    def __contains__(self, name: object) -> bool:
        return name in self._arrays

    def values(self, name: str) -> Any:
        """A column's array (to read, never to write)."""
        return self._arrays[name]

    def __getitem__(self, name: str) -> pd.Series:
        return pd.Series(self._arrays[name], name=name, copy=False)

    def rows(self, keep: np.ndarray) -> Columns:
        """The rows where `keep` (a boolean mask) is true."""
        return Columns({name: values[keep] for name, values in self._arrays.items()})

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._arrays, copy=False)

    def __repr__(self) -> str:
        return f"Columns({list(self._arrays)}, {self._length} rows)"


type Table = pd.DataFrame | Columns


def as_frame(table: Table) -> pd.DataFrame:
    """A table as a pandas frame (code that wants pandas' whole interface)."""
    return table.to_frame() if isinstance(table, Columns) else table


@dataclass(frozen=True)
class Tables:
    # customer_id (int), signup_date, plan (str), mrr (float), churned_at (NaT if active),
    # feature_usage (dict of str -> number or text, the customer's current counters); optional
    # snapshot columns: is_active (False = churned, date unknown), last_login, nps_score,
    # support_tickets (read only for a book without event history)
    customers: Table
    # customer_id, started_at, ended_at (NaT allowed), pages_viewed (int), n_actions (int);
    # optional weight: how many sessions the row stands for (a load's "latest earlier" row)
    sessions: Table
    # customer_id, opened_at, solved_at (NaT if open), priority (low/normal/high/urgent)
    tickets: Table
    # customer_id, responded_at, score (0-10)
    nps: Table
    # customer_id, occurred_at, kind (payment_succeeded/payment_failed/subscription_changed/
    # subscription_cancelled), amount (float), mrr_after (float, NaN if none)
    billing: Table
    # customer_id, at (the session's start), type (str), count (float): one row per action of a
    # session's `actions` list (or per type of a load's older sessions, count summed, `at` latest)
    actions: Table = field(default_factory=lambda: pd.DataFrame(columns=["customer_id", "at", "type", "count"]))

    def frames(self) -> Tables:
        """The same tables, every one a pandas frame."""
        return Tables(**{name: as_frame(getattr(self, name)) for name in self.__dataclass_fields__})
