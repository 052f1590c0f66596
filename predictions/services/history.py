"""Thinning the prediction history: recent days in full, older weeks and months one row each.

The daily batch writes one `churn_predictions` row per active customer (about 0.8 KB each: 80 MB a
day at 100,000 customers, some 29 GB a year). What reads old predictions needs a customer's risk
and health *around* a date, not every day of it: the health-drop rule (default 30 days back), a
playbook's outcome (the first prediction 30 days after enrolment), the admin's history. So past
`RETENTION_PREDICTIONS_WEEKLY_DAYS` a customer keeps the latest prediction of each ISO week (UTC),
past `RETENTION_PREDICTIONS_MONTHLY_DAYS` the latest of each calendar month (weeks are cut at
month ends, so the two tiers nest). A customer's latest prediction is always the latest of its
week and month, so it is never removed.

Retention jobs (`monitoring.services.retention_run`): `fn(cutoff) -> rows deleted`. Only periods
that end before the cutoff are thinned, a period at a time, in short transactions; a second run
deletes nothing.
"""

import datetime as dt
from collections.abc import Callable

from django.db import transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from predictions.models import ChurnPrediction, ModelVersion

BATCH = 5000


def _month_start(moment: dt.datetime) -> dt.datetime:
    day = moment.astimezone(dt.UTC).date()
    return dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)


def _next_month(start: dt.datetime) -> dt.datetime:
    return dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=dt.UTC)


# Weeks are cut at month ends (Mon 28 - Sun 3 is two periods), so every week lies inside one month:
# the latest of a month is always the latest of one of its weeks. Whichever ages are configured and
# whichever job runs first, the two passes never take a month's last row.
def _week_start(moment: dt.datetime) -> dt.datetime:
    day = moment.astimezone(dt.UTC).date()
    monday = dt.datetime.combine(day - dt.timedelta(days=day.weekday()), dt.time(), tzinfo=dt.UTC)
    return max(monday, _month_start(moment))


def _next_week(start: dt.datetime) -> dt.datetime:
    next_monday = start + dt.timedelta(days=7 - start.weekday())  # `start` is a period's start: midnight
    return min(next_monday, _next_month(_month_start(start)))


def _thin_period(start: dt.datetime, end: dt.datetime) -> int:
    """Delete every prediction in [start, end) but each customer's latest one there.

    The surplus ids are listed once: `core.db.delete_in_batches` re-runs its query per
    batch, which here would recompute the window over the whole period each time."""
    ranked = ChurnPrediction.objects.filter(prediction_date__gte=start, prediction_date__lt=end).annotate(
        rank=Window(
            RowNumber(), partition_by=[F("customer_id")], order_by=[F("prediction_date").desc(), F("id").desc()]
        )
    )
    surplus = list(ranked.filter(rank__gt=1).values_list("pk", flat=True))
    for offset in range(0, len(surplus), BATCH):
        with transaction.atomic():
            ChurnPrediction.objects.filter(pk__in=surplus[offset : offset + BATCH]).delete()
    return len(surplus)


def _thin(
    cutoff: dt.datetime,
    period_start: Callable[[dt.datetime], dt.datetime],
    next_period: Callable[[dt.datetime], dt.datetime],
) -> int:
    oldest = ChurnPrediction.objects.filter(prediction_date__lt=cutoff).order_by("prediction_date").first()
    if oldest is None:
        return 0
    deleted, start = 0, period_start(oldest.prediction_date)
    while (end := next_period(start)) <= cutoff:
        deleted += _thin_period(start, end)
        start = end
    return deleted


def thin_predictions_weekly(cutoff: dt.datetime) -> int:
    """Before the cutoff, one prediction per customer per ISO week, cut at month ends (the latest)."""
    return _thin(cutoff, _week_start, _next_week)


def thin_predictions_monthly(cutoff: dt.datetime) -> int:
    """Before the cutoff, one prediction per customer per calendar month (the month's latest)."""
    return _thin(cutoff, _month_start, _next_month)


def model_artifacts_drop_retired(cutoff: dt.datetime) -> int:
    """Retention job: retired models keep their card (metrics, importance) but lose the serialized booster."""
    return ModelVersion.objects.filter(
        status=ModelVersion.Status.RETIRED, trained_at__lt=cutoff, artifact__isnull=False
    ).update(artifact=None)
