"""Reads about customers. Every read is scoped to what the user may see (their portfolio)."""

from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, DecimalField, F, Func, Q, QuerySet, Sum, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from core.auth.roles import sees_all_customers
from core.exceptions import NotFoundError
from customers.models import BillingEvent, Customer, ImportJob, NpsResponse, SupportTicket, UserSession
from customers.timeline import events_after

# The columns the customer list renders, read with .values() to keep the hot path lean;
# `feature_usage` is read as JSON text and embedded as is (see `customer_values`;
# `customers.api.renderers.customer_row_body` renders a row).
CUSTOMER_VALUES = (
    "id",
    "name",
    "email",
    "company",
    "plan",
    "mrr",
    "health_score",
    "churn_risk",
    "nps_score",
    "support_tickets",
    "is_active",
    "owner_id",
    "owner__username",
    "owner__first_name",
    "owner__last_name",
)


def customer_scope(*, user: Any) -> QuerySet[Customer]:
    """All customers the user may see: everything for admins, managers and viewers; own for CSMs."""
    customers = Customer.objects.all()
    if sees_all_customers(user):
        return customers
    return customers.filter(owner_id=user.pk)


def customer_owner_ids() -> Any:
    """The ids of the users who own customers in the book, as a subquery for `pk__in` (the admin's
    owner filter). On PostgreSQL from `customer_counts`, one row per owner kept exact by triggers
    (migration 0005), instead of a DISTINCT over every customer's owner."""
    if connection.vendor == "postgresql":
        return RawSQL("SELECT owner_key FROM customer_counts WHERE n > 0", ())
    return Customer.objects.filter(owner_id__isnull=False).values("owner_id")


def customer_plans(*, user: Any, active_only: bool = False) -> list[str]:
    """The distinct plans of the customers the user may see (only active ones with `active_only`),
    in order: the choices of the admin lists' plan filter.

    A loose index scan: each step asks the (owner, plan) or (plan) index for the next plan
    after the last one, so the cost follows the handful of plans, not the 100,000 rows a
    `SELECT DISTINCT plan` reads."""
    everyone = sees_all_customers(user)
    scope = ("" if everyone else " AND owner_id = %s") + (" AND is_active" if active_only else "")
    params = [] if everyone else [user.pk] * 2
    sql = f"""
        WITH RECURSIVE plans(plan) AS (
            SELECT min(plan) FROM customers WHERE TRUE{scope}
            UNION ALL
            SELECT (SELECT min(c.plan) FROM customers c WHERE c.plan > plans.plan{scope})
            FROM plans WHERE plans.plan IS NOT NULL
        )
        SELECT plan FROM plans WHERE plan IS NOT NULL
    """  # noqa: S608 -- only fixed conditions are interpolated; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def customer_count(*, user: Any) -> int:
    """How many customers the user may see. On PostgreSQL from `customer_counts`, which triggers
    keep exact in the writing transaction (migration 0005), so the unfiltered list's
    `X-Total-Count` costs one small read instead of a COUNT over the whole book."""
    if connection.vendor != "postgresql":
        return customer_scope(user=user).count()
    with connection.cursor() as cursor:
        if sees_all_customers(user):
            cursor.execute("SELECT coalesce(sum(n), 0) FROM customer_counts")
        else:
            cursor.execute("SELECT coalesce(sum(n), 0) FROM customer_counts WHERE owner_key = %s", [user.pk])
        return int(cursor.fetchone()[0])


def customer_get(*, user: Any, customer_id: Any) -> Customer:
    """One visible customer, or 404 — a customer outside the portfolio does not exist for this user."""
    try:
        customer_id = int(customer_id)
    except (TypeError, ValueError):
        raise NotFoundError("Customer not found") from None
    customer = customer_scope(user=user).select_related("owner").filter(pk=customer_id).first()
    if customer is None:
        raise NotFoundError("Customer not found")
    return customer


def customer_names(*, customer_ids: Iterable[int]) -> dict[int, str]:
    """Name of each customer by id (for messages about customers another app raises)."""
    return dict(Customer.objects.filter(pk__in=set(customer_ids)).values_list("pk", "name"))


_risk_bands: Callable[[], tuple[float, float] | None] | None = None


def register_risk_thresholds(provider: Callable[[], tuple[float, float] | None]) -> None:
    """The app that scores customers tells which (medium, high) bands its scores mean (None:
    the settings'); customers does not depend on it."""
    global _risk_bands
    _risk_bands = provider


def risk_band_q(level: str) -> Q:
    """Customers in a risk band. Bands are for customers still with us: a churned customer keeps
    its last prediction before churn, but is at risk of nothing (the dashboard counts the same)."""
    medium, high = risk_thresholds()
    bands = {
        "high": Q(churn_risk__gte=high),
        "medium": Q(churn_risk__gte=medium, churn_risk__lt=high),
        "low": Q(churn_risk__lt=medium),
    }
    return Q(is_active=True) & bands[level]


def risk_thresholds() -> tuple[float, float]:
    """(medium, high): the bands of the model that wrote the scores (relative to its book's churn
    rate), else RISK_MEDIUM_THRESHOLD / RISK_HIGH_THRESHOLD. A loop over many rows reads them once
    and passes them to `risk_level`."""
    bands = _risk_bands() if _risk_bands is not None else None
    return bands if bands is not None else (settings.RISK_MEDIUM_THRESHOLD, settings.RISK_HIGH_THRESHOLD)


def risk_level(probability: float, thresholds: tuple[float, float] | None = None) -> str:
    medium, high = thresholds or risk_thresholds()
    if probability >= high:
        return "high"
    if probability >= medium:
        return "medium"
    return "low"


# --- Risk and revenue at risk per (owner, plan): the Reports page and the daily snapshot ---------

RISK_BINS = 10  # 10-point bins of churn risk: 0–10 %, …, 90–100 %
# Account size by MRR, [low, high): the book has no segment column (the plan is a chart of its own).
SIZE_BOUNDS: tuple[tuple[Decimal, Decimal | None], ...] = (
    (Decimal(0), Decimal(200)),
    (Decimal(200), Decimal(1000)),
    (Decimal(1000), Decimal(5000)),
    (Decimal(5000), None),
)


def _risk_bin(i: int) -> Q:
    """Churn risk in the i-th 10-point bin; the last bin includes a risk of exactly 100 %."""
    low = Decimal(i) / RISK_BINS
    return Q(churn_risk__gte=low) if i == RISK_BINS - 1 else Q(churn_risk__gte=low, churn_risk__lt=low + Decimal("0.1"))


def _size(low: Decimal, high: Decimal | None) -> Q:
    return Q(mrr__gte=low) if high is None else Q(mrr__gte=low, mrr__lt=high)


def risk_revenue_groups(customers: QuerySet[Customer]) -> list[dict]:
    """`customers` per (owner_id, plan): how many in each 10-point bin of risk (`band_0`…`band_9`)
    and their MRR x churn probability (exact decimals) in each account size (`size_0`…, None when
    the group has no customer of that size). One query, one scan.

    Bins and sizes are filtered aggregates rather than more GROUP BY keys: PostgreSQL cannot
    estimate how many groups an expression makes, guesses thousands, and then aggregates the
    100,000 rows in one process; grouped by two plain columns it splits the scan over its
    parallel workers (about 1.5x faster on the bench book)."""
    at_risk = F("mrr") * F("churn_risk")
    money = DecimalField(max_digits=20, decimal_places=6)
    bands = {f"band_{i}": Count("id", filter=_risk_bin(i)) for i in range(RISK_BINS)}
    sizes = {
        f"size_{i}": Sum(at_risk, filter=_size(low, high), output_field=money)
        for i, (low, high) in enumerate(SIZE_BOUNDS)
    }
    groups = customers.values("owner_id", "plan").annotate(**bands, **sizes).order_by()
    return [dict(group) for group in groups]


def iso(value: Any) -> str | None:
    """ISO-8601 in UTC with a `Z`, as DRF renders datetimes."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class IsoUtc(Func):
    """A datetime column as the text `iso` gives (UTC, `Z`, microseconds only when non-zero),
    rendered by the database: parsing a timestamp into a datetime costs psycopg more than the
    whole row's other columns, and the list only writes it back out as text."""

    output_field = TextField()
    template = (
        "to_char(%(expressions)s AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', %(expressions)s) = %(expressions)s"
        """ THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)"""
    )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django stores SQLite datetimes as naive UTC text, `iso`'s digits with a space for the `T`.
        return self.as_sql(compiler, connection, template="replace(%(expressions)s, ' ', 'T') || 'Z'", **extra)


def customer_values(customers: QuerySet[Customer]) -> QuerySet:
    """`customers` as `CUSTOMER_VALUES` rows, with the datetimes as `iso` text and `feature_usage` as
    JSON text."""
    return customers.values(
        *CUSTOMER_VALUES,
        feature_usage_json=Cast("feature_usage", output_field=TextField()),
        signup_date_iso=IsoUtc(F("signup_date")),
        last_login_iso=IsoUtc(F("last_login")),
        churned_at_iso=IsoUtc(F("churned_at")),
    )


class CustomerPages:
    """`customers` for a paginator: a slice picks the page's ids first, then reads those rows.

    With LIMIT/OFFSET over the joined, projected query, PostgreSQL joins the owner and casts
    `feature_usage` for every row it skips (page 30 of 100 rows: 3,000 of each, 8.7 ms); the ids
    alone come from the primary-key index, and only the page's rows are joined (0.9 ms). Ties in
    the requested ordering are broken by id, so a row never shows on two pages.
    """

    ordered = True  # for Paginator's unordered-pagination warning

    def __init__(self, customers: QuerySet[Customer]) -> None:
        ordering = list(customers.query.order_by)
        if not any(str(field).lstrip("-") in ("id", "pk") for field in ordering):
            ordering.append("id")
        self.ordering = ordering
        self.customers = customers.order_by(*ordering)

    def __getitem__(self, window: slice) -> list[dict]:
        if not window.start:  # nothing to skip: the ids-first step would only add a join
            return list(customer_values(self.customers)[window])
        page_ids = self.customers.values("pk")[window]
        return list(customer_values(Customer.objects.filter(pk__in=page_ids).order_by(*self.ordering)))


def customer_sessions(*, customer: Customer) -> QuerySet[UserSession]:
    return UserSession.objects.filter(customer=customer).order_by("-started_at", "-id")


SESSION_VALUES = ("id", "customer_id", "started_at", "ended_at", "pages_viewed", "actions")


def customer_fact_events(customer_id: int, cursor: Any, limit: int) -> list[dict]:
    """Timeline events from the customer's own facts: sessions, tickets, NPS answers, billing."""

    def session(row: UserSession) -> dict:
        return {
            "title": f"Session: {row.pages_viewed} pages viewed",
            "detail": f"{len(row.actions)} actions" if isinstance(row.actions, list) else "",
            "ref": {"kind": "session", "id": row.pk},
        }

    def ticket(row: SupportTicket) -> dict:
        return {
            "title": f"Support ticket opened: {row.subject}",
            "detail": f"{row.priority} priority, {row.status}",
            "ref": {"kind": "support_ticket", "id": row.pk},
        }

    def nps(row: NpsResponse) -> dict:
        return {
            "title": f"NPS response: {row.score}",
            "detail": row.comment,
            "ref": {"kind": "nps_response", "id": row.pk},
        }

    def billing(row: BillingEvent) -> dict:
        return {
            "title": row.get_kind_display().capitalize(),
            "detail": f"{row.amount} {row.plan_after}".strip(),
            "ref": {"kind": "billing_event", "id": row.pk},
        }

    return [
        *events_after(
            UserSession.objects.filter(customer_id=customer_id),
            event_type="session",
            field="started_at",
            cursor=cursor,
            limit=limit,
            render=session,
        ),
        *events_after(
            SupportTicket.objects.filter(customer_id=customer_id),
            event_type="support_ticket",
            field="opened_at",
            cursor=cursor,
            limit=limit,
            render=ticket,
        ),
        *events_after(
            NpsResponse.objects.filter(customer_id=customer_id),
            event_type="nps_response",
            field="responded_at",
            cursor=cursor,
            limit=limit,
            render=nps,
        ),
        *events_after(
            BillingEvent.objects.filter(customer_id=customer_id),
            event_type="billing",
            field="occurred_at",
            cursor=cursor,
            limit=limit,
            render=billing,
        ),
    ]


def import_job_get(*, job_id: Any) -> ImportJob:
    """An import job; jobs are book-wide (managers and admins see every one)."""
    try:
        return ImportJob.objects.select_related("created_by").get(pk=int(job_id))
    except (ImportJob.DoesNotExist, ValueError, OverflowError):
        raise NotFoundError("Import not found.") from None


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def import_job_error_rows(job: ImportJob) -> Iterator[list[str]]:
    """The error report: a header, then file, line, column, message per problem. A cell a
    spreadsheet would run as a formula is prefixed with a quote (the messages quote the values)."""
    yield ["file", "line", "column", "message"]
    for file, line, column, message in job.errors:
        cells = [file, "" if line is None else str(line), column or "", message]
        yield [f"'{c}" if c.startswith(_FORMULA_START) else c for c in cells]
