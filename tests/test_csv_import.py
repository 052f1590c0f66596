"""CSV customer import: every row validated, per-row errors, all or nothing."""

import pytest

from customers.models import Customer


def post(client, text: str):
    return client.post("/api/import/customers/csv", {"csv": text}, format="json")


@pytest.mark.django_db
def test_valid_csv_creates_and_updates_by_email(csm, make_customer, api_for):
    existing = make_customer(owner=csm, email="known@example.com", plan="Basic")
    text = (
        "name,email,company,plan,mrr,signupDate,npsScore,supportTickets,isActive\n"
        "Ada,ada@example.com,Acme,Pro,120.50,2025-01-02T00:00:00Z,9,2,true\n"
        "Known Again,KNOWN@example.com,Acme,Enterprise,900,,,0,true\n"
    )
    response = post(api_for(csm), text)
    assert response.status_code == 200, response.json()
    assert response.json() == {"success": True, "created": 1, "updated": 1, "errors": []}
    ada = Customer.objects.get(email="ada@example.com")
    assert (ada.owner_id, ada.company, str(ada.mrr), ada.nps_score, ada.support_tickets) == (
        csm.pk,
        "Acme",
        "120.50",
        9,
        2,
    )
    existing.refresh_from_db()
    assert (existing.name, existing.plan, str(existing.mrr)) == ("Known Again", "Enterprise", "900.00")


@pytest.mark.django_db
def test_any_bad_row_writes_nothing_and_reports_every_row(csm, api_for):
    text = (
        "name,email,mrr,nps_score\n"
        "Good,good@example.com,10,5\n"
        "Bad Email,not-an-email,10,5\n"
        ",missing-name@example.com,10,5\n"
        "Bad Numbers,n@example.com,-3,11\n"
        "Dup,GOOD@example.com,1,1\n"
    )
    response = post(api_for(csm), text)
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and body["created"] == 0 and body["updated"] == 0
    assert [(e["row"], e["field"]) for e in body["errors"]] == [
        (3, "email"),
        (4, "name"),
        (5, "mrr"),
        (5, "nps_score"),
        (6, "email"),
    ]
    assert body["message"] == "4 row(s) are invalid; nothing was imported."
    assert Customer.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("\n", None),
        ("email\nx@example.com\n", "name"),
        ("name,email,favourite_colour\nA,a@example.com,red\n", "favourite_colour"),
        ("name,email\nA,a@example.com,extra\n", None),
    ],
)
def test_structural_errors(csm, api_for, text, field):
    response = post(api_for(csm), text)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
    assert Customer.objects.count() == 0


@pytest.mark.django_db
def test_csm_cannot_touch_another_portfolio_or_assign_owners(csm, other_csm, make_customer, api_for):
    theirs = make_customer(owner=other_csm, email="theirs@example.com", name="Theirs")
    response = post(api_for(csm), "name,email\nMine Now,theirs@example.com\n")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "email"
    response = post(api_for(csm), f"name,email,owner\nX,x@example.com,{other_csm.username}\n")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "owner"
    theirs.refresh_from_db()
    assert theirs.name == "Theirs" and Customer.objects.count() == 1


@pytest.mark.django_db
def test_manager_may_assign_owners(manager, csm, api_for):
    response = post(api_for(manager), f"name,email,owner\nX,x@example.com,{csm.username}\nY,y@example.com,ghost\n")
    assert response.status_code == 400
    assert response.json()["errors"] == [{"row": 3, "field": "owner", "message": "owner: unknown user 'ghost'."}]
    response = post(api_for(manager), f"name,email,owner\nX,x@example.com,{csm.username}\n")
    assert response.status_code == 200
    assert Customer.objects.get(email="x@example.com").owner_id == csm.pk


@pytest.mark.django_db
def test_missing_csv_field(csm, api_for):
    response = api_for(csm).post("/api/import/customers/csv", {"text": "name,email"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"csv"}
