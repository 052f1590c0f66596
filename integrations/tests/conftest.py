import pytest

from integrations.models import Integration
from integrations.tests.fakes import FakeProvider

STRIPE_SECRET = "whsec_test_stripe_secret"
HUBSPOT_SECRET = "hubspot-client-secret"
ZENDESK_SECRET = "zendesk-signing-secret"
SEGMENT_SECRET = "segment-shared-secret"
GENERIC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def fake_api():
    server = FakeProvider()
    yield server
    server.close()


@pytest.fixture
def make_integration(db):
    def make(provider: str, **config) -> Integration:
        types = {"stripe": "payment", "hubspot": "crm", "zendesk": "support", "segment": "analytics"}
        secrets = {
            "stripe": {"signing_secret": STRIPE_SECRET, "api_key": "sk_test_1"},
            "hubspot": {"client_secret": HUBSPOT_SECRET, "access_token": "pat-1"},
            "zendesk": {"signing_secret": ZENDESK_SECRET, "api_token": "zd-token", "email": "ops@example.com"},
            "segment": {"signing_secret": SEGMENT_SECRET},
            "generic": {"signing_secret": GENERIC_SECRET},
        }
        return Integration.objects.create(
            name=f"{provider} {Integration.objects.count() + 1}",
            type=types.get(provider, "other"),
            status="connected",
            config={"provider": provider, **secrets[provider], **config},
        )

    return make


@pytest.fixture(autouse=True)
def _fresh_receiver_cache():
    # The ASGI receiver caches integration configs per process for a few seconds; tests reuse ids.
    from integrations import asgi

    asgi._configs.clear()
    yield
    asgi._configs.clear()
