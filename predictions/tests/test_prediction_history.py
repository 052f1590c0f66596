"""Prediction history retention: every prediction for 90 days, then the latest per customer per
ISO week (cut at month ends), past 400 days the latest per calendar month; a customer's latest is
never removed, nor the last row of any week or month."""

import datetime as dt
from decimal import Decimal

import pytest
from django.test import override_settings

from monitoring import services
from predictions.models import ChurnPrediction

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)  # a Thursday
JOBS = ["prediction_history_weekly", "prediction_history_monthly"]


def predictions(customer, days_back: range, hour: int = 2) -> None:
    ChurnPrediction.objects.bulk_create(
        ChurnPrediction(
            customer=customer,
            churn_probability=Decimal("0.3000"),
            risk_level="medium",
            prediction_date=(NOW - dt.timedelta(days=days)).replace(hour=hour),
        )
        for days in days_back
    )


def expected_survivors(rows: list[tuple[int, int, dt.datetime]]) -> set[int]:
    """The policy in plain Python: a period that ended before its cutoff keeps each customer's
    latest row in it; the weekly pass runs first, then the monthly one over what it left."""

    def thin(rows, cutoff, period):
        latest: dict = {}
        for row in rows:
            start, end = period(row[2])
            if end <= cutoff:
                key = (row[1], start)
                latest[key] = max(latest.get(key, row), row, key=lambda r: (r[2], r[0]))
        return [row for row in rows if period(row[2])[1] > cutoff or latest[(row[1], period(row[2])[0])] == row]

    def week(moment):  # an ISO week, cut at the month's end
        monday = moment.date() - dt.timedelta(days=moment.weekday())
        end = min(monday + dt.timedelta(days=7), dt.date(moment.year + moment.month // 12, moment.month % 12 + 1, 1))
        return (monday, moment.month), dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC)

    def month(moment):
        following = dt.date(moment.year + moment.month // 12, moment.month % 12 + 1, 1)
        return (moment.year, moment.month), dt.datetime.combine(following, dt.time(), tzinfo=dt.UTC)

    rows = thin(rows, NOW - dt.timedelta(days=90), week)
    return {row[0] for row in thin(rows, NOW - dt.timedelta(days=400), month)}


def test_old_predictions_thin_to_one_per_week_then_month(make_customer):
    daily, churned, lone = make_customer(), make_customer(), make_customer()
    predictions(daily, range(0, 500))
    predictions(daily, range(95, 130, 7), hour=23)  # a second (event) score on some old days
    predictions(churned, range(200, 480))  # last scored 200 days ago
    predictions(lone, range(300, 301))
    rows = list(ChurnPrediction.objects.values_list("pk", "customer_id", "prediction_date"))
    latest = {c.pk: c.predictions.order_by("-prediction_date", "-id").first().pk for c in (daily, churned, lone)}

    results = services.retention_run(now=NOW, only=JOBS)

    kept = set(ChurnPrediction.objects.values_list("pk", flat=True))
    assert kept == expected_survivors(rows)
    assert sum(results.values()) == len(rows) - len(kept) > 400
    assert set(latest.values()) <= kept
    # The last 90 days are whole; the week before them holds one row per customer.
    recent = ChurnPrediction.objects.filter(customer=daily, prediction_date__gte=NOW - dt.timedelta(days=90))
    assert recent.count() == 90
    for customer in (daily, churned):
        dates = list(
            customer.predictions.filter(prediction_date__lt=NOW - dt.timedelta(days=97)).values_list(
                "prediction_date", flat=True
            )
        )
        weeks = [(*d.isocalendar()[:2], d.month) for d in dates if d >= NOW - dt.timedelta(days=390)]
        months = [(d.year, d.month) for d in dates if d < NOW - dt.timedelta(days=440)]
        assert len(weeks) == len(set(weeks)) and len(months) == len(set(months))
    # A second run finds nothing left to do.
    assert services.retention_run(now=NOW, only=JOBS) == dict.fromkeys(JOBS, 0)


def test_a_week_straddling_the_cutoff_is_left_whole(make_customer):
    customer = make_customer()
    predictions(customer, range(85, 100))  # 2026-09-09 back to 2026-08-26, at 02:00
    # The cutoff (2026-09-04 12:00, a Friday) falls in the week of Monday 2026-08-31: that week
    # stays whole (days 85-94); the week before (days 95-99) keeps its latest, 2026-08-30.
    services.retention_run(now=NOW, only=JOBS)
    dates = sorted(d.date() for d in customer.predictions.values_list("prediction_date", flat=True))
    assert dates[0] == dt.date(2026, 8, 30)
    assert dates[1:] == [dt.date(2026, 8, 31) + dt.timedelta(days=n) for n in range(10)]


def periods(customer) -> tuple[set, set]:
    dates = list(customer.predictions.values_list("prediction_date", flat=True))
    return {(d.year, d.month) for d in dates}, {(*d.isocalendar()[:2], d.month) for d in dates}


@pytest.mark.parametrize(("weekly_days", "monthly_days"), [(90, 400), (90, 60)])
def test_no_week_or_month_loses_its_last_row_whatever_the_ages(make_customer, weekly_days, monthly_days):
    """Ages come from the environment, so the monthly cutoff may be the later one: then the monthly
    pass thins days the weekly pass reaches only weeks later. September's latest (Wed 30th) shares
    an ISO week with the churned customer's last rows (Thu 1st, Fri 2nd October)."""
    customer = make_customer()
    last = dt.datetime(2026, 10, 2, 2, 0, tzinfo=dt.UTC)
    predictions(customer, range((NOW - last).days, (NOW - last).days + 200))
    before = periods(customer)
    with override_settings(
        RETENTION_DAYS={"prediction_history_weekly": weekly_days, "prediction_history_monthly": monthly_days}
    ):
        for days_later in (0, 30, 60, 90, 400):
            services.retention_run(now=NOW + dt.timedelta(days=days_later), only=JOBS)
            months, weeks = periods(customer)
            assert months == before[0]  # every month keeps a row
            assert weeks <= before[1]
    assert len(weeks) < len(before[1])  # and the old weeks did thin
