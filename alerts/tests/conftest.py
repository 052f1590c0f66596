"""Fixtures for notification tests: a real SMTP server and webhook receivers on loopback."""

import pytest

from alerts.models import NotificationPreference, NotificationSettings
from alerts.tests.servers import WebhookReceiver


@pytest.fixture
def receiver(settings):
    settings.NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK = True
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def noise(db):
    """The settings row with no group wait (alerts go out at once) unless a test changes it."""
    return NotificationSettings.objects.create(pk=1, group_wait_seconds=0, retry_backoff_seconds=1)


@pytest.fixture
def prefs():
    def set_prefs(user, **fields) -> NotificationPreference:
        pref, _ = NotificationPreference.objects.update_or_create(user=user, defaults=fields)
        return pref

    return set_prefs
