"""The health score weights page: shares of the total next to each weight, and a preview of the
weights in the form (distribution in bins of 10, customers changing band) that saves nothing."""

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from customers.models import Customer
from predictions.models import HealthWeights
from predictions.selectors import health_band
from predictions.services.scoring import score_customers

PROPOSED = {"usage": "0.1", "engagement": "0.1", "support": "0.1", "nps": "5", "billing": "0.1", "tenure": "0.1"}


@pytest.fixture
def book(make_customer):
    now = timezone.now()
    for n in range(12):
        make_customer(
            nps_score=n % 11,
            last_login=now - dt.timedelta(days=3 * n),
            signup_date=now - dt.timedelta(days=20 + 40 * n),
            support_tickets=n % 4,
            feature_usage={"reports": n},
        )
    make_customer(is_active=False, nps_score=0)
    return HealthWeights.objects.create()


def _page(client: Client, weights: HealthWeights) -> str:
    return f"/admin/predictions/healthweights/{weights.pk}/change/"


def _stored_scores() -> dict[int, int]:
    return dict(Customer.objects.filter(is_active=True).values_list("pk", "health_score"))


def test_each_weight_shows_its_share_of_the_total(manager, book):
    client = Client()
    client.force_login(manager)
    page = client.get(_page(client, book)).content.decode()
    assert "weighted mean of six components" in page
    assert "30.0% of the total" in page  # engagement, 0.30 of 1.00
    assert "nps 10.0%" in page
    assert "Preview (does not save)" in page


def test_the_preview_saves_nothing_and_counts_as_the_scoring_would(manager, book):
    score_customers(trigger="manual")
    before = _stored_scores()
    client = Client()
    client.force_login(manager)

    response = client.post(_page(client, book), {**PROPOSED, "_preview": "Preview"})
    assert response.status_code == 200
    book.refresh_from_db()
    assert book.as_dict() == HealthWeights().as_dict()  # not saved
    preview = response.context["weights_preview"]
    page = response.content.decode()
    assert "90.9% of the total" in page  # nps, 5 of 5.5, next to the posted value

    # Independently: save the weights and let a real scoring run compute every score again.
    HealthWeights.objects.filter(pk=book.pk).update(**{k: float(v) for k, v in PROPOSED.items()})
    score_customers(trigger="manual")
    after = _stored_scores()

    def bins(scores):
        counts = [0] * 10
        for score in scores:
            counts[min(score // 10, 9)] += 1
        return counts

    assert preview["scored"] == preview["active_customers"] == 12
    assert [b["current"] for b in preview["bins"]] == bins(before.values())
    assert [b["proposed"] for b in preview["bins"]] == bins(after.values())
    changed = sum(health_band(before[pk]) != health_band(after[pk]) for pk in before)
    assert preview["change_band"] == changed > 0
    assert f'id="weights-change-band">{changed}<' in page


def test_a_viewer_cannot_preview(viewer, book):
    client = Client()
    client.force_login(viewer)
    assert client.post(_page(client, book), {**PROPOSED, "_preview": "Preview"}).status_code == 403
