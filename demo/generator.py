"""Build a deterministic demo book of business and write it in one transaction.

`generate()` draws everything with numpy (see `simulate`), scores it with the rules baseline
(see `scoring`), then writes every table in bulk (see `writer`). The same seed and as-of give
the same rows; only ids and the timestamps of pre-existing/ORM-made rows may differ.
"""

from __future__ import annotations

import datetime as dt
import sys
from contextlib import contextmanager
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone
from tqdm import tqdm

from alerts.models import Alert
from customers.contracts import customer_contracts_refresh
from customers.models import BillingEvent, Customer, NpsResponse, Subscription, SupportTicket, UserSession
from demo import vocab
from demo.scoring import MODEL_VERSION, Scores, score, top_causes
from demo.simulate import (
    BILLING_KINDS,
    FAILED,
    SESSION_CHUNK,
    SESSION_DAYS,
    TICKET_PRIORITIES,
    TICKET_STATUSES,
    Book,
    rng_streams,
    simulate,
)
from demo.users import ensure_staff
from demo.writer import Writer
from integrations.models import Integration
from interventions.models import Intervention
from playbooks.models import Playbook, PlaybookExecution
from predictions.models import ChurnPrediction, PortfolioSnapshot
from predictions.services import churn_causes_refresh, portfolio_snapshot_take

HISTORY_MONTHS = 6  # monthly prediction rows before as-of
SNAPSHOT_DAYS = 365
CHECKPOINT_DAYS = 30
WRITE_CHUNK = 50_000  # rows built at a time for the big tables


class DemoDataError(Exception):
    """The database already holds rows the generated book would collide with."""


def as_of_midnight(value: dt.date | dt.datetime | None = None) -> dt.datetime:
    """UTC midnight of `value` (today by default): the instant every generated fact precedes."""
    if value is None:
        value = timezone.now().astimezone(dt.UTC).date()
    elif isinstance(value, dt.datetime):
        value = (value if timezone.is_aware(value) else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).date()
    return dt.datetime.combine(value, dt.time.min, tzinfo=dt.UTC)


@contextmanager
def _bar(desc: str, total: int, enabled: bool, unit: str = "row"):
    # disable=None: tqdm draws only on a terminal, so logs and CI stay clean.
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None if enabled else True, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def generate(
    *,
    customers: int,
    seed: int,
    as_of: dt.date | dt.datetime | None = None,
    activity_scale: float = 1.0,
    progress: bool = True,
) -> dict[str, int]:
    """Generate and write a demo book of `customers` accounts; returns row counts per table.

    Everything happens in one transaction, so a failure leaves the database as it was.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if activity_scale <= 0:
        raise ValueError("activity_scale must be positive")
    as_of = as_of_midnight(as_of)
    with transaction.atomic():
        staff = ensure_staff(customers, joined=as_of - dt.timedelta(days=SESSION_DAYS * 2 + 30))
        csms = staff.csms
        with _bar("Simulating", customers, progress, unit="customer") as bar:
            book = simulate(
                customers=customers,
                seed=seed,
                as_of=as_of,
                csms=len(csms),
                activity_scale=activity_scale,
                tick=lambda phase, amount: bar.update(amount if phase == "sessions" else 0),
            )
        _check_collisions(book)
        with _bar("Scoring", HISTORY_MONTHS + 1, progress, unit="month") as bar:
            checkpoints = _checkpoint_scores(book, bar)
        final = checkpoints[0]
        # What each customer shows: today's scores, but a churned customer's as of just before
        # its churn (scoring it after would read its silence as a 98-100 % risk dated today).
        shown = score(book, np.where(book.churned, book.churn_t - 1 / 24, 0.0))
        counts: dict[str, int] = {"csms": len(csms), "managers": len(staff.managers)}
        with _bar("Writing", _expected_rows(book), progress) as bar:
            writer = Writer(as_of, on_rows=bar.update)
            ids = writer.reserve_ids(Customer, book.n)
            owner_ids = np.array([user.pk for user in csms], dtype=np.int64)
            counts["customers"] = _write_customers(writer, book, final, shown, ids, owner_ids)
            counts["churned"] = int(book.churned.sum())
            counts["sessions"] = _write_sessions(writer, book, ids)
            counts["support_tickets"] = _write_tickets(writer, book, ids)
            counts["nps_responses"] = _write_nps(writer, book, ids)
            counts["billing_events"] = _write_billing(writer, book, ids)
            counts["subscriptions"] = _write_subscriptions(writer, book, ids, as_of)
            counts["churn_predictions"] = _write_predictions(writer, book, [shown, *checkpoints[1:]], ids)
            playbooks = _ensure_playbooks(as_of)
            counts["interventions"] = _write_interventions(writer, book, final, ids, csms)
            counts["alerts"] = _write_alerts(writer, book, final, ids)
            counts["playbook_executions"] = _write_executions(writer, book, final, ids, playbooks)
            counts["playbook_executions"] += _write_enrolment_history(writer, book, checkpoints, ids, playbooks)
            counts["integrations"] = _ensure_integrations(as_of)
            counts["playbooks"] = len(playbooks)
            bar.total = bar.n
        writer.on_rows = lambda count: None
        with _bar("Portfolio snapshots", SNAPSHOT_DAYS, progress, unit="day") as bar:
            counts["portfolio_snapshots"] = _write_snapshots(writer, book, checkpoints, owner_ids, bar)
        churn_causes_refresh()
    return counts


def _expected_rows(book: Book) -> int:
    """Rows of the big tables (the small ones only nudge the bar past its end)."""
    facts = sum(len(group["customer"]) for group in (book.sessions, book.tickets, book.nps, book.billing))
    history = sum(int(_alive(book, -float(i * CHECKPOINT_DAYS)).sum()) for i in range(1, HISTORY_MONTHS + 1))
    return 2 * book.n + facts + history


def _check_collisions(book: Book) -> None:
    """Refuse to half-write a book whose e-mails exist already (e.g. the same seed twice)."""
    if not Customer.objects.exists():
        return
    emails = [email.lower() for email in book.email]
    for start in range(0, len(emails), 5000):
        taken = (
            Customer.objects.annotate(email_key=Lower("email"))
            .filter(email_key__in=emails[start : start + 5000])
            .values_list("email", flat=True)[:3]
        )
        if taken:
            raise DemoDataError(
                f"Customers with these e-mails exist already: {', '.join(taken)}. "
                "Seed an empty database, or use another --seed."
            )


def _checkpoint_scores(book: Book, bar: Any) -> list[Scores]:
    """Scores at as-of and every 30 days back over a year (index i is i*30 days before as-of)."""
    result = []
    for i in range(SNAPSHOT_DAYS // CHECKPOINT_DAYS + 1):
        result.append(score(book, -float(i * CHECKPOINT_DAYS)))
        if i <= HISTORY_MONTHS:
            bar.update(1)
    return result


def _alive(book: Book, t: float) -> np.ndarray:
    return (book.signup_t < t) & (~book.churned | (book.churn_t >= t))


# --- customers and facts ---------------------------------------------------------------------


def _write_customers(
    writer: Writer, book: Book, final: Scores, shown: Scores, ids: np.ndarray, owner_ids: np.ndarray
) -> int:
    """Facts as of today; risk and health as the customer's latest prediction (`shown`)."""
    f = final.features
    usage_keys = [*vocab.FEATURES, "seats_active", "login", "features"]
    usage_columns = [book.feature_usage[key].tolist() for key in usage_keys]
    usage = [dict(zip(usage_keys, values, strict=True)) for values in zip(*usage_columns, strict=True)]
    nps = f["nps"]
    signup = writer.timestamps(book.signup_t)
    return writer.insert(
        Customer,
        {
            "id": ids,
            "name": book.name,
            "email": book.email,
            "company": book.company,
            "plan": np.array(vocab.PLANS)[book.plan],
            "mrr": writer.decimals(book.mrr, 2),
            "signup_date": signup,
            "last_login": writer.timestamps(book.last_login),
            "health_score": shown.health,
            "churn_risk": writer.decimals(shown.probability, 4),
            "nps_score": np.where(np.isnan(nps), None, np.nan_to_num(nps).astype(np.int64)),
            "support_tickets": f["open_tickets"],
            "feature_usage": writer.json(usage),
            "is_active": ~book.churned,
            "owner_id": owner_ids[book.owner],
            "churned_at": writer.timestamps(np.where(book.churned, book.churn_t, np.nan)),
            "external_id": book.external_id,
            "created_at": signup,
            "updated_at": writer.timestamps(np.zeros(book.n)),
        },
    )


def _write_sessions(writer: Writer, book: Book, ids: np.ndarray) -> int:
    s = book.sessions
    pool = np.array(book.action_pool, dtype=object)

    def chunks():
        for start in range(0, len(s["customer"]), WRITE_CHUNK):
            part = slice(start, start + WRITE_CHUNK)
            yield {
                "customer_id": ids[s["customer"][part]],
                "started_at": writer.timestamps(s["started"][part]),
                "ended_at": writer.timestamps(s["ended"][part]),
                "pages_viewed": s["pages"][part],
                "actions": pool[s["action"][part]],
            }

    return writer.insert_chunks(UserSession, chunks())


def _write_tickets(writer: Writer, book: Book, ids: np.ndarray) -> int:
    tk = book.tickets
    subjects = np.array(vocab.TICKET_SUBJECTS_ROUTINE + vocab.TICKET_SUBJECTS_ESCALATION, dtype=object)
    return writer.insert(
        SupportTicket,
        {
            "customer_id": ids[tk["customer"]],
            "subject": subjects[tk["subject"]],
            "status": np.array(TICKET_STATUSES, dtype=object)[tk["status"]],
            "priority": np.array(TICKET_PRIORITIES, dtype=object)[tk["priority"]],
            "opened_at": writer.timestamps(tk["opened"]),
            "solved_at": writer.timestamps(tk["solved"]),
        },
    )


def _write_nps(writer: Writer, book: Book, ids: np.ndarray) -> int:
    nps = book.nps
    pools = (vocab.NPS_COMMENTS_PROMOTER, vocab.NPS_COMMENTS_PASSIVE, vocab.NPS_COMMENTS_DETRACTOR)
    comments = [
        pools[bucket][index] if index >= 0 else ""
        for bucket, index in zip(nps["bucket"].tolist(), nps["comment"].tolist(), strict=True)
    ]
    return writer.insert(
        NpsResponse,
        {
            "customer_id": ids[nps["customer"]],
            "score": nps["score"],
            "comment": comments,
            "responded_at": writer.timestamps(nps["t"]),
        },
    )


def _write_billing(writer: Writer, book: Book, ids: np.ndarray) -> int:
    b = book.billing
    plans = np.array(("", *vocab.PLANS), dtype=object)
    return writer.insert(
        BillingEvent,
        {
            "customer_id": ids[b["customer"]],
            "kind": np.array(BILLING_KINDS, dtype=object)[b["kind"]],
            "amount": writer.decimals(b["amount"], 2),
            "mrr_after": writer.decimals(b["mrr_after"], 2),
            "plan_after": plans[b["plan_after"] + 1],
            "occurred_at": writer.timestamps(b["t"]),
        },
    )


def _write_subscriptions(writer: Writer, book: Book, ids: np.ndarray, as_of: dt.datetime) -> int:
    """One subscription per customer: a version from signup, a second from the plan change (if
    any), canceled at churn; three in five accounts billed yearly (by position, so no random
    draw shifts the rest of the book). Then each customer's contract is derived from them."""
    plans = np.array(vocab.PLANS, dtype=object)
    n = book.n
    changed = book.changed_before(book.end_t)
    first_end = np.where(changed, book.change_t, np.where(book.churned, book.churn_t, np.nan))
    first_status = np.where(changed, "ended", np.where(book.churned, "canceled", "active"))
    second = np.flatnonzero(changed)
    yearly = np.where(np.arange(n) % 5 < 3, 12, 1)
    external = np.array([f"sub_demo_{i}" for i in range(n)], dtype=object)
    written = writer.insert(
        Subscription,
        {
            "customer_id": np.concatenate([ids, ids[second]]),
            "external_id": np.concatenate([external, external[second]]),
            "plan": np.concatenate([plans[book.plan0], plans[book.plan1[second]]]),
            "mrr": writer.decimals(np.concatenate([book.mrr0, book.mrr1[second]]), 2),
            "started_at": writer.timestamps(np.concatenate([book.signup_t, book.change_t[second]])),
            "ended_at": writer.timestamps(
                np.concatenate([first_end, np.where(book.churned[second], book.churn_t[second], np.nan)])
            ),
            "status": np.concatenate(
                [first_status, np.where(book.churned[second], "canceled", "active").astype(object)]
            ).astype(object),
            "bill_period_months": np.concatenate([yearly, yearly[second]]),
        },
    )
    customer_contracts_refresh(customer_ids=ids.tolist(), now=as_of)
    return written


def _write_predictions(writer: Writer, book: Book, checkpoints: list[Scores], ids: np.ndarray) -> int:
    """One row per customer at as-of (a churned one's just before its churn: `checkpoints[0]`
    scores each customer at its own instant), plus monthly rows while they were active."""

    def chunks():
        for i, scores in enumerate(checkpoints[: HISTORY_MONTHS + 1]):
            alive = np.arange(book.n) if i == 0 else np.flatnonzero(_alive(book, scores.t))
            levels = scores.risk_levels().astype(object)
            for start in range(0, alive.size, WRITE_CHUNK):
                rows = alive[start : start + WRITE_CHUNK]
                yield {
                    "customer_id": ids[rows],
                    "churn_probability": writer.decimals(scores.probability[rows], 4),
                    "risk_level": levels[rows],
                    "top_causes": writer.json(top_causes(scores, rows)),
                    "prediction_date": writer.timestamps(np.broadcast_to(scores.t, (book.n,))[rows]),
                    "model_version": np.full(rows.size, MODEL_VERSION, dtype=object),
                    "health_score": scores.health[rows],
                }

    return writer.insert_chunks(ChurnPrediction, chunks())


# --- work on customers: interventions, alerts, playbooks ----------------------------------------


def _full_names(users: list[Any]) -> np.ndarray:
    return np.array([user.get_full_name() or user.get_username() for user in users], dtype=object)


def _write_interventions(writer: Writer, book: Book, final: Scores, ids: np.ndarray, csms: list[Any]) -> int:
    """Retention work: more of it on accounts on the churn path, in a rough patch or at risk now."""
    rng = rng_streams(book.seed)[6]
    n, s = book.n, book.signals
    e0, e1 = book.episode
    end = book.end_t
    risky_now = ~book.churned & (final.probability >= settings.RISK_MEDIUM_THRESHOLD)
    recent_path = book.on_path & (book.churn_t > -SESSION_DAYS)
    chance = np.where(recent_path, 0.5, np.where(book.rough, 0.35, 0.06))
    chance = np.where(risky_now, np.maximum(chance, 0.6), chance)
    per_customer = (rng.random(n) < chance) * (1 + (rng.random(n) < 0.25))
    c = np.repeat(np.arange(n), per_customer)
    earliest = np.maximum(book.signup_t + 3, -SESSION_DAYS)
    low = np.select(
        [recent_path, book.rough, risky_now],
        [book.churn_t - s["window"], e0, np.full(n, -21.0)],
        earliest,
    )
    high = np.select([recent_path, book.rough], [book.churn_t - 2, e1], np.zeros(n))
    low, high = np.maximum(low, earliest), np.minimum(high, end - 0.05)
    bad = low >= high
    low, high = np.where(bad, earliest, low), np.where(bad, end - 0.05, high)
    keep = (low < high)[c]
    c = c[keep]
    k = c.size
    created = low[c] + (high - low)[c] * rng.random(k)

    # Which kind of work: the customer's visible trouble decides, with some noise.
    types = vocab.INTERVENTION_TYPES  # Executive, Payment, Support, Training, Renewal, Onboarding
    w = np.full((k, len(types)), 0.2)
    w[:, 4] = 0.6
    w[:, 0] += 2.0 * (s["low_nps"] | s["rough_nps"])[c] + 1.0 * s["disengage"][c]
    w[:, 1] += 3.0 * (s["payment"] | s["rough_payment"] | s["downgrade"])[c]
    w[:, 2] += 3.0 * (s["support"] | s["rough_tickets"])[c]
    w[:, 3] += 2.0 * (s["disengage"] | s["rough_dip"])[c]
    w[:, 5] += 2.5 * (created - book.signup_t[c] < 60)
    pick = (rng.random(k)[:, None] > (w.cumsum(axis=1) / w.sum(axis=1, keepdims=True))).sum(axis=1)
    type_names = np.array(types, dtype=object)[pick]

    age = -created
    churned_c = book.churned[c]
    open_ = (age < 21) & ~churned_c
    status = np.where(
        open_,
        np.array(["pending", "active", "in_progress"], dtype=object)[rng.choice(3, k, p=[0.3, 0.35, 0.35])],
        np.where(rng.random(k) < 0.8, "completed", "cancelled").astype(object),
    )
    completed = status == "completed"
    done_t = np.minimum(created + rng.uniform(3, 25, k), end[c] - 0.01)  # by churn or as-of at the latest
    done_t = np.maximum(done_t, created + 0.01)
    lost = churned_c & (book.churn_t[c] - done_t < 120)
    succeeded = completed & (rng.random(k) < np.where(lost, 0.12, 0.8))
    outcome = np.where(completed, np.where(succeeded, "succeeded", "failed"), None).astype(object)
    revenue = np.where(completed, np.where(succeeded, 12 * book.mrr[c], 0.0), np.nan)
    hot = recent_path[c] | risky_now[c]
    priority = np.where(
        hot,
        np.where(rng.random(k) < 0.6, "high", "medium"),
        np.array(["low", "medium", "high"])[rng.choice(3, k, p=[0.35, 0.5, 0.15])],
    ).astype(object)
    owner = book.owner[c]
    notes_done = np.where(
        succeeded,
        "Customer engaged and agreed on next steps; risk reduced.",
        "Customer did not respond to outreach.",
    )
    return writer.insert(
        Intervention,
        {
            "customer_id": ids[c],
            "type": type_names,
            "status": status,
            "priority": priority,
            "assigned_csm": _full_names(csms)[owner],
            "description": np.array([vocab.INTERVENTION_TEXT[t][0] for t in type_names], dtype=object),
            "next_action": np.array([vocab.INTERVENTION_TEXT[t][1] for t in type_names], dtype=object),
            "due_date": writer.timestamps(created + rng.uniform(5, 21, k)),
            "created_at": writer.timestamps(created),
            "completed_at": writer.timestamps(np.where(completed, done_t, np.nan)),
            "notes": np.where(completed, notes_done, "").astype(object),
            "outcome": outcome,
            "revenue_impact": writer.decimals(revenue, 2),
            "created_by_id": np.array([user.pk for user in csms], dtype=np.int64)[owner],
        },
    )


def _write_alerts(writer: Writer, book: Book, final: Scores, ids: np.ndarray) -> int:
    """Alerts of the last two weeks: risk, failed payments, detractor answers, and two sync alerts."""
    rng = rng_streams(book.seed)[7]
    n = book.n
    active = ~book.churned
    p = final.probability
    high, medium = settings.RISK_HIGH_THRESHOLD, settings.RISK_MEDIUM_THRESHOLD
    # customer, title, message, severity, t, source, context (what `alerts_resolve_cleared` reads)
    rows: list[tuple[int | None, str, str, str, float, str, dict]] = []

    def who(i: int) -> str:
        return f"{book.name[i]} ({book.company[i]})"

    draw = rng.random(n)
    when = rng.uniform(-14, -0.01, n)
    risky = np.flatnonzero(active & (((p >= high) & (draw < 0.7)) | ((p >= medium) & (p < high) & (draw < 0.25))))
    causes = dict(zip(risky.tolist(), top_causes(final, risky), strict=True))

    def why(i: int) -> str:
        return f" Top cause: {causes[i][0]['cause']} ({causes[i][0]['value']})." if causes[i] else ""

    for i in risky:
        severity = "critical" if p[i] >= 0.9 else "high" if p[i] >= high else "medium"
        prefix = "High churn risk" if p[i] >= high else "Rising churn risk"
        level = "high" if p[i] >= high else "medium"
        rows.append(
            (
                i,
                f"{prefix}: {who(i)}",
                f"Churn probability {p[i]:.0%}.{why(i)}",
                severity,
                when[i],
                Alert.Source.RISK_RISE,
                {"level": level},
            )
        )
    bill = book.billing
    failed = np.flatnonzero((bill["kind"] == FAILED) & (bill["t"] >= -14) & active[bill["customer"]])
    for j in failed:
        i = int(bill["customer"][j])
        rows.append(
            (
                i,
                f"Payment failed: {who(i)}",
                f"A payment of ${bill['amount'][j]:,.2f} failed.",
                "high",
                bill["t"][j],
                Alert.Source.PAYMENT_FAILED,
                {},
            )
        )
    nps = book.nps
    for j in np.flatnonzero((nps["t"] >= -14) & (nps["score"] <= 4) & active[nps["customer"]]):
        i = int(nps["customer"][j])
        rows.append(
            (
                i,
                f"Detractor NPS ({nps['score'][j]}): {who(i)}",
                "A low NPS answer came in.",
                "medium",
                nps["t"][j],
                Alert.Source.OTHER,
                {},
            )
        )
    for i in np.flatnonzero(active & (p < medium) & (draw > 0.985)):
        rows.append(
            (
                i,
                f"Renewal in 30 days: {who(i)}",
                "Confirm plan and seats before renewal.",
                "low",
                when[i],
                Alert.Source.OTHER,
                {},
            )
        )
    # The demo's integrations are not connected (see `_ensure_integrations`): no sync ever ran to fail.
    rows.append(
        (
            None,
            "Integrations not connected",
            "Stripe, HubSpot, Zendesk and Segment have no credentials yet: connect them under Integrations.",
            "low",
            -0.2,
            Alert.Source.OTHER,
            {},
        )
    )
    customer, title, message, severity, t, source, context = zip(*rows, strict=True)
    t = np.array(t, dtype=np.float64)
    read = rng.random(len(rows)) < np.clip(0.1 + 0.05 * -t, 0, 0.8)
    customer_ids = np.array([None if i is None else int(ids[i]) for i in customer], dtype=object)
    # Only what is still worrying stays open: an alert about a customer whose risk is low today was
    # dealt with (resolved a day or so after it was raised, as the inbox would show it).
    index = np.array([-1 if i is None else int(i) for i in customer], dtype=np.int64)
    settled = (index >= 0) & (p[np.maximum(index, 0)] < medium)
    resolved_t = np.minimum(t + rng.uniform(0.2, 3, len(rows)), -0.01)
    read |= settled
    return writer.insert(
        Alert,
        {
            "message": list(message),
            "read": read,
            "created_at": writer.timestamps(t),
            "title": list(title),
            "severity": list(severity),
            "customer_id": customer_ids,
            "source": list(source),
            "context": writer.json(context),
            "status": np.where(settled, Alert.Status.RESOLVED, Alert.Status.OPEN).astype(object),
            "resolved_at": writer.timestamps(np.where(settled, np.maximum(resolved_t, t), np.nan)),
        },
    )


def _ensure_playbooks(as_of: dt.datetime) -> dict[str, Playbook]:
    playbooks = {}
    for name, spec in vocab.PLAYBOOKS.items():
        playbook, created = Playbook.objects.get_or_create(
            name=name,
            defaults={
                "description": spec["description"],
                "steps": spec["steps"],
                "holdout_share": MEASURED_PLAYBOOKS.get(name, 0.0),
            },
        )
        if created:
            Playbook.objects.filter(pk=playbook.pk).update(created_at=as_of - dt.timedelta(days=420))
        if name in MEASURED_PLAYBOOKS and playbook.holdout_share != MEASURED_PLAYBOOKS[name]:
            playbook.holdout_share = MEASURED_PLAYBOOKS[name]
            playbook.save(update_fields=["holdout_share"])
        playbooks[name] = playbook
    return playbooks


def _write_executions(
    writer: Writer, book: Book, final: Scores, ids: np.ndarray, playbooks: dict[str, Playbook]
) -> int:
    """A few playbook runs on troubled accounts; at most one running per playbook and customer."""
    rng = rng_streams(book.seed)[8]
    active = ~book.churned
    troubled = np.flatnonzero(
        (active & (final.probability >= settings.RISK_MEDIUM_THRESHOLD))
        | (book.on_path & (book.churn_t > -SESSION_DAYS + 30))
        | book.rough
    )
    if troubled.size == 0:
        return 0
    chosen = np.sort(rng.choice(troubled, size=min(troubled.size, max(5, book.n // 40)), replace=False))
    causes = top_causes(final, chosen)
    k = chosen.size
    started = np.where(
        active[chosen],
        rng.uniform(-90, -0.1, k),
        np.maximum(book.churn_t[chosen] - rng.uniform(5, 60, k), book.signup_t[chosen] + 1),
    )
    started = np.minimum(started, book.end_t[chosen] - 0.05)
    recent = active[chosen] & (started > -14)
    status = np.where(
        recent & (rng.random(k) < 0.6),
        "running",
        np.where(rng.random(k) < np.where(active[chosen], 0.75, 0.5), "completed", "failed"),
    )
    done = np.where(status == "running", np.nan, np.minimum(started + rng.uniform(1, 14, k), book.end_t[chosen] - 0.01))
    done = np.where(np.isnan(done), np.nan, np.maximum(done, started + 0.001))
    names, results = [], []
    errors = ("E-mail bounced: mailbox unavailable", "Customer has no primary contact", "Owner left the company")
    for index, cause_list in enumerate(causes):
        cause = cause_list[0]["cause"] if cause_list else "Declining usage"
        name = vocab.TYPE_PLAYBOOK[vocab.CAUSE_PLAYBOOK[cause]]
        steps = vocab.PLAYBOOKS[name]["steps"]
        names.append(name)
        if status[index] == "completed":
            results.append({"steps_completed": len(steps), "steps_total": len(steps), "trigger": cause})
        elif status[index] == "failed":
            step = int(rng.integers(1, len(steps)))
            results.append(
                {
                    "steps_completed": step,
                    "steps_total": len(steps),
                    "trigger": cause,
                    "failed_step": steps[step]["key"],
                    "error": errors[int(rng.integers(0, len(errors)))],
                }
            )
        else:
            step = int(rng.integers(0, len(steps)))
            results.append(
                {
                    "steps_completed": step,
                    "steps_total": len(steps),
                    "trigger": cause,
                    "current_step": steps[step]["key"],
                }
            )
    return writer.insert(
        PlaybookExecution,
        {
            "playbook_id": np.array([playbooks[name].pk for name in names], dtype=np.int64),
            "customer_id": ids[chosen],
            "status": status.astype(object),
            "started_at": writer.timestamps(started),
            "completed_at": writer.timestamps(done),
            "result": writer.json(results),
        },
    )


DEMO_INTEGRATION_REASON = "Demo data: no credentials configured — connect it under Integrations"


# Playbooks the demo has measured against a holdout: the two the riskiest accounts' causes call for
# most often, so both groups reach the Reports page's minimum on a book of a few hundred accounts.
# Measuring an effect on so few accounts needs a fifth held out: the demo sets that share on both
# (the default playbooks, seeded first, hold out less), and the draw below holds it out on average.
MEASURED_PLAYBOOKS = {"Executive Check-in": 0.2, "Product Training": 0.2}
ENROL_RISK_QUANTILE = 0.5  # each month the riskier half of the live accounts qualifies
# How much likelier the holdout is drawn among enrolments whose customer goes on to churn than among the
# rest. Enrolments and outcomes come from the book itself; weighting the draw by the outcome is what
# makes the enrolled churn less than the holdout (a few points, as a real playbook might).
HOLDOUT_IF_CHURNS, HOLDOUT_OTHERWISE = 0.4, 0.17


def _write_enrolment_history(
    writer: Writer, book: Book, checkpoints: list[Scores], ids: np.ndarray, playbooks: dict[str, Playbook]
) -> int:
    """Six months of finished enrolments in the measured playbooks, with their holdout rows.

    After each monthly score the riskiest accounts not yet enrolled join the playbook their top cause
    calls for, within a week, with their risk of that day as `risk_at_start`; a share of them is held
    out. Every row is finished (completed, or failed at a step), so the engine never resumes one and
    nobody is e-mailed; churn is the book's own (`churned_at`), which the report reads."""
    rng = rng_streams(book.seed)[10]
    enrolled = np.zeros(book.n, dtype=bool)
    who, when, risk, names = [], [], [], []
    for i in range(HISTORY_MONTHS, 0, -1):
        scores = checkpoints[i]
        alive = _alive(book, scores.t)
        if not alive.any():
            continue
        cut = float(np.quantile(scores.probability[alive], ENROL_RISK_QUANTILE))
        rows = np.flatnonzero(alive & ~enrolled & (scores.probability >= cut))
        for row, causes in zip(rows.tolist(), top_causes(scores, rows), strict=True):
            # The measured playbook that answers the biggest of its top causes, if any does.
            answers = [vocab.TYPE_PLAYBOOK[vocab.CAUSE_PLAYBOOK[cause["cause"]]] for cause in causes]
            name = next((name for name in answers if name in MEASURED_PLAYBOOKS), "")
            if name:
                enrolled[row] = True
                who.append(row)
                when.append(scores.t)
                risk.append(scores.probability[row])
                names.append(name)
    if not who:
        return 0
    c = np.array(who, dtype=np.int64)
    k = c.size
    # Within a week of the score, and before the churn (an enrolment the day it churned still counts).
    started = np.minimum(np.array(when) + rng.uniform(0, 7, k), book.end_t[c] - 0.01)
    churns = book.churned[c] & (book.churn_t[c] >= started)
    share = np.array([playbooks[name].holdout_share for name in names])
    weight = np.where(churns, HOLDOUT_IF_CHURNS, HOLDOUT_OTHERWISE)
    holdout = rng.random(k) < share * weight / weight.mean()
    failed = ~holdout & (rng.random(k) < 0.08)
    done = np.where(holdout, started, np.minimum(started + rng.uniform(8, 30, k), book.end_t[c] - 0.005))
    done = np.maximum(done, started)
    results = []
    for index, name in enumerate(names):
        steps = vocab.PLAYBOOKS[name]["steps"]
        if holdout[index]:
            results.append({"holdout": True, "steps": []})
        elif failed[index]:
            step = int(rng.integers(1, len(steps)))
            results.append(
                {
                    "steps_completed": step,
                    "steps_total": len(steps),
                    "failed_step": steps[step]["key"],
                    "error": "Customer has no primary contact",
                }
            )
        else:
            results.append({"steps_completed": len(steps), "steps_total": len(steps)})
    status = np.where(holdout | ~failed, PlaybookExecution.Status.COMPLETED, PlaybookExecution.Status.FAILED).astype(
        object
    )
    return writer.insert(
        PlaybookExecution,
        {
            "playbook_id": np.array([playbooks[name].pk for name in names], dtype=np.int64),
            "customer_id": ids[c],
            "status": status,
            "started_at": writer.timestamps(started),
            "completed_at": writer.timestamps(done),
            "result": writer.json(results),
            "trigger": np.full(k, PlaybookExecution.Trigger.BULK, dtype=object),
            "is_holdout": holdout,
            "risk_at_start": writer.decimals(np.array(risk), 4),
        },
    )


def _ensure_integrations(as_of: dt.datetime) -> int:
    """The four systems a real book is fed by, each wired to its provider's connector but honestly
    not connected: their secret keys are there and empty (the API's redaction still hides them), so
    the demo claims no sync that never happened and "Sync now" says which credential is missing.
    Only settings the connectors read: a setting no code reads would be a promise the demo breaks."""
    specs = {
        "Stripe": (
            Integration.Type.PAYMENT,
            {
                "provider": "stripe",
                "sync_interval_minutes": 15,
                "api_key": "",
                "signing_secret": "",
            },
        ),
        "HubSpot": (
            Integration.Type.CRM,
            {
                "provider": "hubspot",
                "sync_interval_minutes": 60,
                "access_token": "",
                "client_secret": "",
            },
        ),
        "Zendesk": (
            Integration.Type.SUPPORT,
            {
                "provider": "zendesk",
                "subdomain": "churnshield-demo",
                "email": "support-bot@churnshield.example",
                "sync_interval_minutes": 30,
                "api_token": "",
            },
        ),
        "Segment": (
            Integration.Type.ANALYTICS,
            {
                "provider": "segment",
                "signing_secret": "",
            },
        ),
    }
    for name, (kind, config) in specs.items():
        integration, created = Integration.objects.get_or_create(
            name=name,
            defaults={
                "type": kind,
                "status": Integration.Status.DISCONNECTED,
                "last_sync_at": None,
                "config": config,
                "last_error": DEMO_INTEGRATION_REASON,
                "last_error_at": as_of,
            },
        )
        if created:
            Integration.objects.filter(pk=integration.pk).update(created_at=as_of - dt.timedelta(days=400))
    return len(specs)


# --- portfolio snapshots ------------------------------------------------------------------------


def _write_snapshots(writer: Writer, book: Book, checkpoints: list[Scores], owner_ids: np.ndarray, bar: Any) -> int:
    """A year of daily totals per owner from the risk path between monthly scores; as-of itself
    comes from `portfolio_snapshot_take` so the last day matches the current rows exactly."""
    days_back = np.arange(SNAPSHOT_DAYS - 1, 0, -1)  # as-of minus 364 … minus 1
    end_of_day = 1.0 - days_back  # each row describes the state at the end of its day
    position = np.clip(-end_of_day / CHECKPOINT_DAYS, 0, len(checkpoints) - 1)
    lower = np.minimum(np.floor(position).astype(np.int64), len(checkpoints) - 2)
    weight = np.clip(position - lower, 0, 1)
    probabilities = np.stack([scores.probability for scores in checkpoints])  # checkpoints × customers
    high = settings.RISK_HIGH_THRESHOLD
    owners = len(owner_ids)
    shape = (owners, days_back.size)
    active, at_risk, churned = np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    risk, mrr = np.zeros(shape), np.zeros(shape)
    for start in range(0, book.n, SESSION_CHUNK):
        rows = slice(start, min(book.n, start + SESSION_CHUNK))
        signup, churn, gone = book.signup_t[rows, None], book.churn_t[rows, None], book.churned[rows, None]
        alive = (signup < end_of_day) & (~gone | (churn >= end_of_day))
        path = probabilities[lower, rows].T * (1 - weight) + probabilities[lower + 1, rows].T * weight
        with np.errstate(invalid="ignore"):
            upgraded = ~np.isnan(book.change_t[rows, None]) & (book.change_t[rows, None] < end_of_day)
        monthly = np.where(upgraded, book.mrr1[rows, None], book.mrr0[rows, None])
        # Sum rows per owner with one matrix product instead of a Python or ufunc.at loop.
        by_owner = np.eye(owners)[book.owner[rows]].T
        active += np.rint(by_owner @ alive).astype(np.int64)
        at_risk += np.rint(by_owner @ (alive & (path >= high))).astype(np.int64)
        risk += by_owner @ np.where(alive, path, 0.0)
        mrr += by_owner @ np.where(alive, monthly, 0.0)
        churned += np.rint(by_owner @ (gone & (churn >= end_of_day - 1) & (churn < end_of_day))).astype(np.int64)
    dates = np.array([(book.as_of - dt.timedelta(days=int(d))).date().isoformat() for d in days_back], dtype=object)
    PortfolioSnapshot.objects.filter(
        date__gte=book.as_of.date() - dt.timedelta(days=SNAPSHOT_DAYS - 1),
        date__lt=book.as_of.date(),
        owner_id__in=owner_ids.tolist(),
    ).delete()
    # Like portfolio_snapshot_take: a row for every owner of at least one (generated) customer.
    present = np.unique(book.owner)
    total = writer.insert(
        PortfolioSnapshot,
        {
            "date": np.tile(dates, present.size),
            "owner_id": np.repeat(owner_ids[present], days_back.size),
            "active_customers": active[present].ravel(),
            "at_risk_customers": at_risk[present].ravel(),
            "risk_sum": np.round(risk[present].ravel(), 4),
            "mrr_sum": writer.decimals(mrr[present].ravel(), 2),
            "churned_customers": churned[present].ravel(),
        },
    )
    bar.update(days_back.size)
    total += portfolio_snapshot_take(day=book.as_of.date())
    bar.update(1)
    return total
