"""Integration setup in the admin: a typed form per provider built from the connector's settings,
secrets write-only, the connection test against the local fake providers (real HTTP), the webhook
URL, the derived status, roles and query counts."""

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from integrations import setup
from integrations.models import Integration, SyncRun
from integrations.tests.fakes import stripe_customer, stripe_list

pytestmark = pytest.mark.django_db

ADD = "/admin/integrations/integration/add/"
CHANGELIST = "/admin/integrations/integration/"
TEST_NEW = "/admin/integrations/integration/test-connection/"
STRIPE_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
NEW_KEY = "sk_test_NEWKEY_51HxYz"
SIGNING = "whsec_stripe_setup_secret"
STRIPE_REFUSAL = (
    401,
    {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****zdp7"}},
    {},
)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def change_url(integration: Integration) -> str:
    return f"/admin/integrations/integration/{integration.pk}/change/"


def check_url(integration: Integration) -> str:
    return f"/admin/integrations/integration/{integration.pk}/test-connection/"


def stripe_form(integration: Integration, **fields: str) -> dict[str, str]:
    """The change form as the browser posts it: every visible field, secrets blank."""
    return {"name": integration.name, "api_base": integration.config.get("api_base", ""), **fields}


def form_errors(response) -> dict[str, list[str]]:
    form = response.context["adminform"].form
    return {key: [str(e) for e in value] for key, value in form.errors.items()}


@pytest.fixture
def stripe_fake(fake_api):
    """The fake Stripe API accepting only STRIPE_KEY, answering anything else as Stripe does."""
    customers = [stripe_customer(1, "a@example.com")]
    fake_api.routes[("GET", "/v1/customers")] = lambda p, q, b: stripe_list(customers, q, p)
    fake_api.auth = (f"Bearer {STRIPE_KEY}", STRIPE_REFUSAL)
    return fake_api


@pytest.fixture
def stripe_integration(stripe_fake):
    return Integration.objects.create(
        name="Stripe EU",
        type="payment",
        config={
            "provider": "stripe",
            "api_key": STRIPE_KEY,
            "signing_secret": SIGNING,
            "api_base": stripe_fake.base_url,
        },
    )


# --- The add page: provider first, then that provider's fields --------------------------------------


def test_the_add_page_asks_for_the_provider_first(manager):
    response = signed_in(manager).get(ADD)
    assert response.status_code == 200
    html = response.content.decode()
    assert sorted(re.findall(r'data-provider="(\w+)"', html)) == ["generic", "hubspot", "segment", "stripe", "zendesk"]
    assert "<textarea" not in html


@pytest.mark.parametrize(
    ("provider", "fields"),
    [
        ("stripe", ["api_key", "signing_secret", "api_base", "sync_interval_minutes"]),
        ("hubspot", ["access_token", "client_secret", "webhook_url", "api_base", "sync_interval_minutes"]),
        ("zendesk", ["subdomain", "email", "api_token", "signing_secret", "api_base", "sync_interval_minutes"]),
        ("segment", ["signing_secret"]),
        ("generic", ["signing_secret"]),
    ],
)
def test_each_provider_gets_its_own_fields_and_no_json(manager, provider, fields):
    response = signed_in(manager).get(f"{ADD}?provider={provider}")
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert [name for name in form.fields if name not in ("name", "connection_check")] == fields + [
        f"clear_{key}" for key in fields if form.schema and key in {s.key for s in form.schema if s.is_secret}
    ]
    html = response.content.decode()
    assert "<textarea" not in html and 'name="status"' not in html and 'name="config"' not in html


@pytest.mark.parametrize(
    ("provider", "data", "errors"),
    [
        ("stripe", {}, {"api_key": ["This field is required."]}),
        (
            "stripe",
            {"api_key": STRIPE_KEY, "api_base": "not a url", "sync_interval_minutes": "0"},
            {
                "api_base": ["Enter a valid URL."],
                "sync_interval_minutes": ["Ensure this value is greater than or equal to 1."],
            },
        ),
        (
            "stripe",
            {"api_key": STRIPE_KEY, "signing_secret": "abc"},
            {"signing_secret": ["A Stripe webhook signing secret starts with whsec_."]},
        ),
        (
            "hubspot",
            {"webhook_url": "ftp://x"},
            {"access_token": ["This field is required."], "webhook_url": ["Enter a valid URL."]},
        ),
        (
            "zendesk",
            {"subdomain": "acme.zendesk.com", "email": "nope"},
            {
                "subdomain": ["Only the part before .zendesk.com, in lower case: for acme.zendesk.com enter acme."],
                "email": ["Enter a valid email address."],
                "api_token": ["This field is required."],
            },
        ),
        (
            "zendesk",
            {"email": "ops@example.com", "api_token": "t"},
            {"subdomain": ["Enter your Zendesk subdomain."]},
        ),
        ("segment", {}, {"signing_secret": ["This field is required."]}),
        (
            "generic",
            {"signing_secret": "not-base64!"},
            {"signing_secret": ["A Standard Webhooks secret: whsec_ followed by base64."]},
        ),
    ],
)
def test_bad_settings_are_field_errors_and_nothing_is_written(manager, provider, data, errors):
    response = signed_in(manager).post(f"{ADD}?provider={provider}", {"name": f"My {provider}", **data})
    assert response.status_code == 200
    assert form_errors(response) == errors
    assert Integration.objects.count() == 0


@pytest.mark.parametrize(
    ("provider", "data", "config", "kind"),
    [
        (
            "stripe",
            {"api_key": STRIPE_KEY, "signing_secret": SIGNING, "sync_interval_minutes": "30"},
            {"provider": "stripe", "api_key": STRIPE_KEY, "signing_secret": SIGNING, "sync_interval_minutes": 30},
            "payment",
        ),
        (
            "hubspot",
            {"access_token": "pat-na1-1", "client_secret": "cs-1", "api_base": "https://hub.example.com"},
            {
                "provider": "hubspot",
                "access_token": "pat-na1-1",
                "client_secret": "cs-1",
                "api_base": "https://hub.example.com",
            },
            "crm",
        ),
        (
            "zendesk",
            {"subdomain": "acme", "email": "ops@example.com", "api_token": "zd-1"},
            {"provider": "zendesk", "subdomain": "acme", "email": "ops@example.com", "api_token": "zd-1"},
            "support",
        ),
        ("segment", {"signing_secret": "seg-1"}, {"provider": "segment", "signing_secret": "seg-1"}, "analytics"),
        (
            "generic",
            {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            {"provider": "generic", "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            "other",
        ),
    ],
)
def test_a_valid_form_saves_the_settings_the_connector_reads(manager, provider, data, config, kind):
    response = signed_in(manager).post(f"{ADD}?provider={provider}", {"name": f"My {provider}", **data})
    assert response.status_code == 302, form_errors(response)
    integration = Integration.objects.get()
    assert (integration.config, integration.type, integration.status) == (config, kind, "disconnected")


# --- Secrets are write-only ---------------------------------------------------------------------------


def test_secrets_are_never_rendered_and_blank_keeps_them(manager, stripe_integration):
    client = signed_in(manager)
    page = client.get(change_url(stripe_integration))
    html = page.content.decode()
    assert STRIPE_KEY not in html and SIGNING not in html
    assert html.count("set — leave blank to keep") == 2  # the API key and the signing secret
    assert re.search(r'<input type="password" name="api_key"[^>]*>', html).group(0).count("value=") == 0

    response = client.post(
        change_url(stripe_integration), stripe_form(stripe_integration, api_key="", signing_secret="")
    )
    assert response.status_code == 302
    stripe_integration.refresh_from_db()
    assert (stripe_integration.config["api_key"], stripe_integration.config["signing_secret"]) == (STRIPE_KEY, SIGNING)

    client.post(change_url(stripe_integration), stripe_form(stripe_integration, api_key=NEW_KEY))
    stripe_integration.refresh_from_db()
    assert stripe_integration.config["api_key"] == NEW_KEY

    client.post(change_url(stripe_integration), stripe_form(stripe_integration, clear_signing_secret="on"))
    stripe_integration.refresh_from_db()
    assert "signing_secret" not in stripe_integration.config and stripe_integration.config["api_key"] == NEW_KEY
    assert "not set" in client.get(change_url(stripe_integration)).content.decode()

    # Nowhere after the edits: not the change page, the list, the history page or the log messages.
    for path in (
        change_url(stripe_integration),
        CHANGELIST,
        change_url(stripe_integration).replace("change", "history"),
    ):
        html = client.get(path).content.decode()
        assert STRIPE_KEY not in html and NEW_KEY not in html and SIGNING not in html, path
    messages = " ".join(LogEntry.objects.values_list("change_message", flat=True))
    assert "API key" in messages and NEW_KEY not in messages and SIGNING not in messages


def test_a_rejected_form_does_not_echo_the_secret(manager):
    response = signed_in(manager).post(f"{ADD}?provider=stripe", {"name": "", "api_key": NEW_KEY})
    assert form_errors(response) == {"name": ["This field is required."]}
    assert NEW_KEY not in response.content.decode()


def test_removing_a_required_secret_is_refused(manager, stripe_integration):
    response = signed_in(manager).post(
        change_url(stripe_integration), stripe_form(stripe_integration, clear_api_key="on")
    )
    assert form_errors(response) == {"api_key": ["This field is required."]}
    stripe_integration.refresh_from_db()
    assert stripe_integration.config["api_key"] == STRIPE_KEY


def test_the_api_still_hides_the_secrets(manager, api_for, stripe_integration):
    response = api_for(manager).get("/api/integrations")
    assert response.status_code == 200
    body = response.content.decode()
    assert STRIPE_KEY not in body and SIGNING not in body and "api_base" in body


# --- Test connection: real HTTP against the fakes, nothing saved ----------------------------------------


def test_connection_test_with_a_good_key_succeeds_and_saves_nothing(manager, stripe_fake):
    client = signed_in(manager)
    data = {"name": "New Stripe", "api_key": STRIPE_KEY, "api_base": stripe_fake.base_url}
    response = client.post(f"{TEST_NEW}?provider=stripe", data)
    assert response.status_code == 200
    result = response.json()
    assert (result["ok"], result["message"]) == (True, "Stripe accepted the API key: it can read your customers.")
    assert [(c[0], c[1], c[2]) for c in stripe_fake.calls] == [("GET", "/v1/customers", {"limit": "1"})]
    assert Integration.objects.count() == 0 and SyncRun.objects.count() == 0

    # Saving with the test's token marks it connected; the same form without it does not.
    saved = client.post(f"{ADD}?provider=stripe", {**data, "connection_check": result["token"]})
    assert saved.status_code == 302
    assert Integration.objects.get().status == "connected"
    client.post(f"{ADD}?provider=stripe", {**data, "name": "Untested"})
    assert Integration.objects.get(name="Untested").status == "disconnected"


def test_connection_test_with_a_rejected_key_says_why_in_plain_words(manager, stripe_fake):
    response = signed_in(manager).post(
        f"{TEST_NEW}?provider=stripe", {"name": "x", "api_key": NEW_KEY, "api_base": stripe_fake.base_url}
    )
    assert response.status_code == 200
    assert response.json() == {
        "ok": False,
        "message": "Stripe refused the credentials (HTTP 401): Invalid API Key provided: sk_test_****zdp7",
        "token": "",
    }
    assert len(stripe_fake.calls) == 1  # one call, no retries
    assert Integration.objects.count() == 0


def test_connection_test_uses_the_stored_secret_when_the_field_is_blank(manager, stripe_integration, stripe_fake):
    client = signed_in(manager)
    before = (stripe_integration.config, stripe_integration.status)
    ok = client.post(check_url(stripe_integration), stripe_form(stripe_integration, api_key="")).json()
    assert ok["ok"] is True
    typed = client.post(check_url(stripe_integration), stripe_form(stripe_integration, api_key=NEW_KEY)).json()
    assert typed["ok"] is False and NEW_KEY not in typed["message"]
    stripe_integration.refresh_from_db()
    assert (stripe_integration.config, stripe_integration.status) == before


def test_a_test_token_vouches_only_for_the_settings_it_tested(manager, stripe_integration, stripe_fake):
    client = signed_in(manager)
    token = client.post(check_url(stripe_integration), stripe_form(stripe_integration)).json()["token"]
    Integration.objects.filter(pk=stripe_integration.pk).update(status="error")
    # Another key saved with the token of the stored one: not connected.
    client.post(
        change_url(stripe_integration), stripe_form(stripe_integration, api_key=NEW_KEY, connection_check=token)
    )
    stripe_integration.refresh_from_db()
    assert stripe_integration.status == "disconnected"
    forged = client.post(change_url(stripe_integration), stripe_form(stripe_integration, connection_check="forged"))
    assert forged.status_code == 302
    stripe_integration.refresh_from_db()
    assert stripe_integration.status == "disconnected"


def test_status_cannot_be_typed_in(manager, stripe_integration):
    Integration.objects.filter(pk=stripe_integration.pk).update(status="error")
    response = signed_in(manager).post(
        change_url(stripe_integration), stripe_form(stripe_integration, status="connected", sync_interval_minutes="15")
    )
    assert response.status_code == 302
    stripe_integration.refresh_from_db()
    # Only the sync interval changed: the credentials' status stays what the last sync found.
    assert (stripe_integration.status, stripe_integration.config["sync_interval_minutes"]) == ("error", 15)


@pytest.mark.parametrize(
    ("provider", "path", "config", "answer", "expected"),
    [
        (
            "hubspot",
            "/crm/v3/owners",
            {"access_token": "pat-good"},
            (200, {"results": []}, {}),
            (True, "HubSpot accepted the access token: it can read your owners."),
        ),
        (
            "hubspot",
            "/crm/v3/owners",
            {"access_token": "pat-bad"},
            None,
            (False, "HubSpot refused the credentials (HTTP 401): Authentication credentials not found."),
        ),
        (
            "zendesk",
            "/api/v2/users/me.json",
            {"email": "ops@example.com", "api_token": "zd-good"},
            (200, {"user": {"id": 7, "email": "ops@example.com"}}, {}),
            (True, "Zendesk accepted the API token of ops@example.com."),
        ),
        (
            "zendesk",
            "/api/v2/users/me.json",
            {"email": "ops@example.com", "api_token": "zd-bad"},
            (200, {"user": {"id": None, "name": "Anonymous user"}}, {}),
            (False, "Zendesk did not recognise the agent e-mail and API token."),
        ),
    ],
)
def test_connection_test_per_provider(manager, fake_api, provider, path, config, answer, expected):
    fake_api.routes[("GET", path)] = lambda p, q, b: answer
    if answer is None:
        fake_api.auth = (
            "Bearer pat-good",
            (
                401,
                {
                    "status": "error",
                    "message": "Authentication credentials not found.",
                    "category": "INVALID_AUTHENTICATION",
                },
                {},
            ),
        )
    result = (
        signed_in(manager)
        .post(f"{TEST_NEW}?provider={provider}", {"name": "x", **config, "api_base": fake_api.base_url})
        .json()
    )
    assert (result["ok"], result["message"]) == expected


def test_connection_test_reports_an_unreachable_server_and_bad_fields(manager):
    client = signed_in(manager)
    down = client.post(f"{TEST_NEW}?provider=stripe", {"api_key": STRIPE_KEY, "api_base": "http://127.0.0.1:9"}).json()
    assert down["ok"] is False and down["message"].startswith("Could not get an answer from http://127.0.0.1:9")
    bad = client.post(f"{TEST_NEW}?provider=stripe", {"api_base": "nope"})
    assert bad.status_code == 400
    assert bad.json()["errors"] == {"api_key": ["This field is required."], "api_base": ["Enter a valid URL."]}
    push_only = client.post(f"{TEST_NEW}?provider=segment", {"signing_secret": "s"}).json()
    assert push_only["ok"] is False and "no API to test" in push_only["message"]


# --- The webhook URL ----------------------------------------------------------------------------------


def test_the_change_page_shows_the_webhook_url_and_how_to_sign(manager, stripe_integration):
    html = signed_in(manager).get(change_url(stripe_integration)).content.decode()
    url = f"http://testserver/api/webhooks/stripe/{stripe_integration.pk}"
    assert f'value="{url}"' in html and 'id="cs-copy-webhook"' in html
    assert "signing secret (whsec_…)" in html
    assert url.endswith(f"/api/webhooks/stripe/{stripe_integration.pk}")
    add_page = signed_in(manager).get(f"{ADD}?provider=stripe").content.decode()
    assert "Shown once the integration is saved" in add_page
    assert f'data-url="{TEST_NEW}?provider=stripe"' in add_page


def test_hubspot_behind_a_proxy_shows_its_configured_url(manager):
    integration = Integration.objects.create(
        name="HubSpot",
        type="crm",
        config={
            "provider": "hubspot",
            "access_token": "pat",
            "webhook_url": "https://cs.example.com/api/webhooks/hubspot/9",
        },
    )
    html = signed_in(manager).get(change_url(integration)).content.decode()
    assert 'value="https://cs.example.com/api/webhooks/hubspot/9"' in html


def test_setup_service_saves_and_derives_the_status():
    integration = Integration(name="Direct", type="payment", config={"provider": "stripe", "api_key": "k"})
    setup.integration_save(integration=integration, previous_config=None, verified=False)
    assert Integration.objects.get().status == "disconnected"
    integration.config = {**integration.config, "sync_interval_minutes": 5}
    integration.status = "connected"
    setup.integration_save(
        integration=integration, previous_config={"provider": "stripe", "api_key": "k"}, verified=False
    )
    assert Integration.objects.get().status == "connected"  # the interval is not a credential


# --- Who may do it ------------------------------------------------------------------------------------


def test_csms_get_403_and_viewers_read_only(csm, viewer, stripe_integration, stripe_fake):
    for path in (CHANGELIST, ADD, f"{ADD}?provider=stripe"):
        assert signed_in(csm).get(path).status_code == 403, path
    assert signed_in(csm).post(f"{TEST_NEW}?provider=stripe", {"api_key": STRIPE_KEY}).status_code == 403
    # An integration is outside every CSM's scope: its pages are a 404, as every admin answers.
    assert signed_in(csm).get(change_url(stripe_integration)).status_code == 404
    assert signed_in(csm).post(check_url(stripe_integration), {"name": "x"}).status_code == 404
    assert signed_in(viewer).post(check_url(stripe_integration), {"name": "x"}).status_code == 403
    assert signed_in(viewer).post(f"{TEST_NEW}?provider=stripe", {"api_key": STRIPE_KEY}).status_code == 403
    assert stripe_fake.calls == []
    page = signed_in(viewer).get(change_url(stripe_integration))
    html = page.content.decode()
    assert page.status_code == 200 and 'name="api_key"' not in html and STRIPE_KEY not in html
    assert "api_key, signing_secret (values hidden)" in html
    assert signed_in(viewer).post(change_url(stripe_integration), {"name": "Renamed"}).status_code == 403


def test_the_test_endpoint_wants_post(manager, stripe_integration):
    assert signed_in(manager).get(check_url(stripe_integration)).status_code == 405


def test_an_integration_without_provider_asks_for_one(manager):
    integration = Integration.objects.create(name="Old", type="payment", config={"region": "eu", "api_key": "sk_old"})
    client = signed_in(manager)
    html = client.get(change_url(integration)).content.decode()
    assert 'name="provider"' in html and "sk_old" not in html and "eu" in html
    client.post(change_url(integration), {"name": "Old", "provider": "stripe"})
    integration.refresh_from_db()
    assert integration.config == {"region": "eu", "api_key": "sk_old", "provider": "stripe"}
    form = client.get(change_url(integration)).context["adminform"].form
    assert "api_key" in form.fields


# --- Query counts -------------------------------------------------------------------------------------


def test_query_counts(manager, stripe_integration, stripe_fake, django_assert_num_queries):
    client = signed_in(manager)
    client.get(change_url(stripe_integration))  # the content type, cached for the process from then on
    # Session, user, role, the integration, two for permissions, two for the menu's singletons.
    with django_assert_num_queries(8):
        assert client.get(change_url(stripe_integration)).status_code == 200
    # Session, user, role, the integration, two for permissions, the form's unique-name check; the
    # call to Stripe is HTTP, not SQL, and nothing is written.
    with django_assert_num_queries(7):
        assert client.post(check_url(stripe_integration), stripe_form(stripe_integration)).json()["ok"] is True
    with CaptureQueriesContext(connection) as one_row:
        assert client.get(CHANGELIST).status_code == 200
    for n in range(5):
        Integration.objects.create(name=f"More {n}", type="crm", config={"provider": "hubspot"}, last_error="x" * 300)
    with django_assert_num_queries(len(one_row)):  # the health columns come with the rows: no query per row
        page = client.get(CHANGELIST)
    assert page.status_code == 200 and f'title="{"x" * 300}"' in page.content.decode()
