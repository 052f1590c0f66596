"""A real Celery worker over Redis runs our tasks against the test database."""

import datetime as dt

import pytest
from django.utils import timezone

from churnshield.celery import app
from predictions.models import PortfolioSnapshot
from predictions.tasks import take_portfolio_snapshot
from tests.live.conftest import VENV_BIN, eventually, service_env

# Transactional: the server and worker processes must see the rows the test commits.
pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_worker_takes_a_portfolio_snapshot(start_process, redis_url, csm, make_customer):
    make_customer(owner=csm, churn_risk="0.9000")
    make_customer(owner=csm, churn_risk="0.1000")
    env = service_env(REDIS_URL=redis_url, CELERY_TASK_ALWAYS_EAGER="false")
    start_process(
        [str(VENV_BIN / "celery"), "-A", "churnshield", "worker", "--pool", "solo", "--loglevel", "INFO"],
        env,
        "celery-worker",
    )
    app.conf.update(broker_url=redis_url, result_backend=redis_url, task_always_eager=False)
    try:
        day = (timezone.localdate() - dt.timedelta(days=1)).isoformat()
        result = take_portfolio_snapshot.delay(day)
        assert result.get(timeout=60) == 1
        snapshot = eventually(lambda: PortfolioSnapshot.objects.filter(date=day, owner=csm).first())
        assert (snapshot.active_customers, snapshot.at_risk_customers) == (2, 1)
    finally:
        app.conf.update(task_always_eager=True)
