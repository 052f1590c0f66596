"""Delivery errors: transient ones are retried with backoff, permanent ones fail the delivery at once."""


class DeliveryError(Exception):
    """Sending failed and retrying will not help (4xx, refused recipient, unsafe URL, no address)."""


class TransientDeliveryError(DeliveryError):
    """Sending failed in a way that may pass (5xx, 429, timeouts, refused connections, SMTP 4xx)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnsafeWebhookURL(DeliveryError):
    """The webhook URL is not https or resolves to a private, loopback or link-local address."""
