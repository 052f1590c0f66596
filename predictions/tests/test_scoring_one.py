"""Real time is a batch of one: one customer's facts read in one statement make the frames the
batch's load makes for that customer, hence the same features, probability and stored score; and
a predict costs a constant, small number of queries however many facts the customer has."""

import datetime as dt

import pandas as pd
import pytest
from django.db import connection
from django.db.models import Exists, OuterRef
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import BillingEvent, Customer, NpsResponse, SupportTicket, UserSession
from demo.generator import generate
from predictions.data import load_customer_tables, load_tables
from predictions.ml.tables import as_frame
from predictions.models import ChurnPrediction, ModelVersion
from predictions.services.registry import loaded_model, model_promote, model_train
from predictions.services.scoring import score_customers, score_one

TABLES = ("customers", "sessions", "tickets", "nps", "billing", "actions")


@pytest.fixture
def trained(db):
    """A small demo book and a trained champion (promoted by hand: on so small a book the rules
    may rank as well, and these tests are about serving a trained model)."""
    generate(customers=600, seed=11, as_of=timezone.now().date(), activity_scale=0.5, progress=False)
    version = model_train(seed=0, min_positives=20)
    if version.status != ModelVersion.Status.CHAMPION:
        model_promote(version, "Promoted by hand for the test.")
    return version


@pytest.fixture
def chosen(trained, make_customer) -> dict[str, int]:
    """Customers of every shape the one-customer read must get right."""
    active = Customer.objects.filter(is_active=True, churned_at__isnull=True).order_by("pk")
    with_everything = list(
        active.filter(
            *(Exists(model.objects.filter(customer=OuterRef("pk"))) for model in (UserSession, SupportTicket))
        )
        .filter(*(Exists(model.objects.filter(customer=OuterRef("pk"))) for model in (NpsResponse, BillingEvent)))
        .values_list("pk", flat=True)[:21]
    )
    shapes = {
        "ordinary": with_everything[0],
        "ordinary too": with_everything[5],
        "no sessions": with_everything[10],
        "no tickets": with_everything[15],
        "no NPS, no billing": with_everything[20],
        "no facts at all": make_customer(feature_usage={}).pk,
        "churned": Customer.objects.filter(churned_at__isnull=False).order_by("pk").first().pk,
    }
    UserSession.objects.filter(customer_id=shapes["no sessions"]).delete()
    SupportTicket.objects.filter(customer_id=shapes["no tickets"]).delete()
    NpsResponse.objects.filter(customer_id=shapes["no NPS, no billing"]).delete()
    BillingEvent.objects.filter(customer_id=shapes["no NPS, no billing"]).delete()
    # An open ticket (no solve date) and a billing kind the app does not know.
    SupportTicket.objects.create(
        customer_id=shapes["ordinary"], opened_at=timezone.now() - dt.timedelta(days=3), priority="urgent"
    )
    BillingEvent.objects.filter(pk=BillingEvent.objects.filter(customer_id=shapes["ordinary too"]).first().pk).update(
        kind="refund_issued"
    )
    return shapes


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame's rows in a stable order (the two reads need not list them alike)."""
    keys = [column for column in frame.columns if column != "feature_usage"]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def test_one_customers_read_gives_the_batchs_tables_features_probability_and_score(trained, chosen):
    now = timezone.now()
    batch = load_tables(as_of=now)
    model = loaded_model(trained)
    batch_features = model.features(batch, pd.Timestamp(now))
    batch_probability = pd.Series(model.predict_proba(batch_features), index=batch_features.index)
    compared = dict.fromkeys(TABLES, 0)

    for shape, customer_id in chosen.items():
        one = load_customer_tables(customer_id=customer_id, as_of=now, actions=True)
        for name in TABLES:
            theirs = getattr(batch, name)
            theirs = theirs.loc[theirs["customer_id"] == customer_id]
            mine = as_frame(getattr(one, name))
            assert sorted(mine.columns) == sorted(theirs.columns), (shape, name)
            pd.testing.assert_frame_equal(
                _rows(mine[list(theirs.columns)]),
                _rows(theirs),
                check_dtype=False,
                check_exact=True,
                obj=f"{shape}: {name}",
            )
            compared[name] += len(mine)
        features = model.features(one, pd.Timestamp(now))
        if shape == "churned":
            assert features.empty and customer_id not in batch_features.index
            continue
        pd.testing.assert_frame_equal(features, batch_features.loc[[customer_id]], check_exact=True, obj=shape)
        # The same row, the same number; within the whole book's matrix product, to the last bits.
        assert model.predict_proba(features)[0] == model.predict_proba(batch_features.loc[[customer_id]])[0]
        assert model.predict_proba(features)[0] == pytest.approx(batch_probability[customer_id], rel=1e-12)

    # Not vacuous: the shapes differ and the compared tables had rows.
    assert all(compared[name] > 0 for name in TABLES), compared
    no_facts = load_customer_tables(customer_id=chosen["no facts at all"], as_of=now)
    assert [len(getattr(no_facts, name)) for name in TABLES] == [1, 0, 0, 0, 0, 0]
    assert len(load_customer_tables(customer_id=chosen["no sessions"], as_of=now).sessions) == 0

    # And the real-time score stored for each is the batch's (stored values are rounded).
    run = score_customers(run_key="same-moment", now=now)
    batch = {p.customer_id: p for p in ChurnPrediction.objects.filter(run=run)}
    for shape, customer_id in chosen.items():
        if shape == "churned":
            assert customer_id not in batch
            continue
        one, expected = score_one(customer_id=customer_id, now=now), batch[customer_id]
        assert (one.churn_probability, one.risk_level, one.health_score, one.health_components) == (
            expected.churn_probability,
            expected.risk_level,
            expected.health_score,
            expected.health_components,
        ), shape
        assert one.pk != expected.pk and one.model_version == trained.version


# Per predict on PostgreSQL: the user with its groups (authentication and role), the customer's
# row with the scoring settings and its latest prediction, then for a writer its facts (one
# statement) and either the one-statement write (inputs changed) or the stored prediction; a
# viewer reads the stored prediction only.
WRITER_QUERIES, UNCHANGED_QUERIES, VIEWER_QUERIES = 4, 4, 3


def test_a_predict_costs_the_same_few_queries_whatever_the_customer_has(trained, chosen, api_for, manager, viewer):
    writer, reader = api_for(manager), api_for(viewer)
    warm = Customer.objects.filter(is_active=True).exclude(pk__in=chosen.values()).order_by("pk").first()
    assert writer.post("/api/v1/churn/predict", {"customerId": warm.pk}, format="json").status_code == 200

    def predict(client, customer_id: int) -> tuple[dict, list[str]]:
        with CaptureQueriesContext(connection) as queries:
            response = client.post("/api/v1/churn/predict", {"customerId": customer_id}, format="json")
        assert response.status_code == 200, response.content
        return response.json(), [query["sql"] for query in queries.captured_queries]

    heavy, empty = chosen["ordinary"], chosen["no facts at all"]
    assert UserSession.objects.filter(customer_id=heavy).count() >= 10
    counts = {}
    for customer_id in (heavy, empty):
        # Scored once, then its digest forgotten: the predict below re-scores it to the same risk
        # and health (no alert to raise or clear: those add their own writes).
        score_one(customer_id=customer_id)
        ChurnPrediction.objects.filter(customer_id=customer_id).update(inputs_digest="")
        scored, changed = predict(writer, customer_id)
        again, unchanged = predict(writer, customer_id)  # nothing new: the stored prediction
        assert again["churnProbability"] == scored["churnProbability"]
        _, viewed = predict(reader, customer_id)
        counts[customer_id] = (len(changed), len(unchanged), len(viewed))
        assert sum("INSERT" in sql for sql in unchanged + viewed) == 0
    assert counts[heavy] == counts[empty]  # on SQLite too (more queries there: a read per table)
    if connection.vendor == "postgresql":
        assert counts[heavy] == (WRITER_QUERIES, UNCHANGED_QUERIES, VIEWER_QUERIES)
        assert sum("INSERT" in sql for sql in changed) == 1  # run and prediction in one statement
