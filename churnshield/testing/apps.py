from django.apps import AppConfig


class TestingConfig(AppConfig):
    """Installed by the test settings only: test-run speed-ups that change nothing tests see."""

    name = "churnshield.testing"
    label = "churnshield_testing"
    verbose_name = "Test run support"
