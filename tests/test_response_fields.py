"""S2 exposure: every GET endpoint's response field set equals a committed snapshot
(tests/snapshots/response_fields.json), so a new field in a response needs review, and no field
name anywhere in it looks like a secret.

After an intended change: `UPDATE_SNAPSHOTS=1 pytest tests/test_response_fields.py`, then review
the diff of the snapshot in the pull request.
"""

import json
import os
from pathlib import Path

import pytest

from tests.test_permissions import OPERATIONS, SECRETS, _path, world  # noqa: F401 (fixture)

SNAPSHOT = Path(__file__).parent / "snapshots" / "response_fields.json"
GETS = sorted(path for (method, path), kind in OPERATIONS.items() if method == "GET" and kind == "read")


def field_paths(value, prefix: str = "") -> set[str]:
    """Dotted paths of every key, `[]` for list items: {"a": [{"b": 1}]} → {"a", "a[].b"}."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            # Keys that are data (ids, dates, cause names), not fields, are collapsed to `*`.
            name = "*" if not str(key).replace("_", "").isalpha() or prefix.endswith(("byDay", "by_day")) else key
            paths.add(prefix + str(name))
            paths |= field_paths(inner, f"{prefix}{name}.")
    elif isinstance(value, list):
        for inner in value:
            paths |= field_paths(inner, prefix.rstrip(".") + "[].")
    return paths


@pytest.mark.django_db
def test_get_responses_match_the_committed_field_snapshot(world, admin_user, api_for):  # noqa: F811
    from integrations.models import Integration

    Integration.objects.create(name="HubSpot", type="crm", config={"private_app_token": "pat-1", "portal": 5})
    client = api_for(admin_user)
    current = {}
    for path in GETS:
        response = client.get(_path(path, world["mine"]))
        assert response.status_code == 200, path
        fields = field_paths(response.json())
        assert [field for field in fields if SECRETS.search(field.rsplit(".", 1)[-1])] == [], path
        current[path] = sorted(fields)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    committed = json.loads(SNAPSHOT.read_text())
    for path in GETS:
        added = sorted(set(current[path]) - set(committed.get(path, [])))
        removed = sorted(set(committed.get(path, [])) - set(current[path]))
        assert (added, removed) == ([], []), f"{path}: review the change, then UPDATE_SNAPSHOTS=1"
    assert sorted(committed) == GETS


def test_customer_datetimes_render_as_iso_with_z(make_customer, manager, api_for):
    """Datetimes rendered by the database (`IsoUtc`) are the same text `iso` gives,
    microseconds only when non-zero, null when unset."""
    import datetime as dt

    from customers.selectors import iso

    with_micro = dt.datetime(2026, 11, 30, 8, 15, 42, 123456, tzinfo=dt.UTC)
    whole = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)
    # Not UTC on the way in, and microseconds with trailing zeros (isoformat keeps all six digits).
    paris = dt.datetime(2026, 7, 1, 9, 30, 5, 120000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    first = make_customer(owner=manager, last_login=with_micro, churned_at=None)
    second = make_customer(owner=manager, last_login=whole, churned_at=whole)
    third = make_customer(owner=manager, last_login=paris)
    rows = {row["id"]: row for row in api_for(manager).get("/api/customers").json()}
    assert rows[first.pk]["lastLogin"] == iso(with_micro) == "2026-11-30T08:15:42.123456Z"
    assert rows[first.pk]["churnedAt"] is None
    assert rows[second.pk]["lastLogin"] == rows[second.pk]["churnedAt"] == "2026-11-29T08:00:00Z"
    assert rows[third.pk]["lastLogin"] == iso(paris.astimezone(dt.UTC)) == "2026-07-01T07:30:05.120000Z"
    detail = api_for(manager).get(f"/api/customers/{second.pk}").json()
    assert detail["signupDate"] == iso(second.signup_date)
