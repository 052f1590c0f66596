"""Celery entry points for notifications: thin, idempotent, primitive arguments.

`fan_out_alerts` runs once per transaction that raised alerts (enqueued on commit); it writes the
deliveries and sends the ones already due. Alerts whose fan-out was never enqueued (broker down)
are fanned out by `dispatch_notifications`. `dispatch_notifications` (beat, every minute) sends
deliveries whose group wait, quiet hours, throttle or digest time has come, and re-opens expired
snoozes. `send_delivery` sends one and retries transient failures with backoff and jitter.
"""

from celery import shared_task

from alerts.notifications import dispatch, fanout

# Alerts per fan-out transaction when the sweep catches up on many (one scoring batch's worth).
FAN_OUT_CHUNK = 1000


def _send_due() -> int:
    sent = 0
    while True:
        claimed = dispatch.deliveries_claim_due()
        for delivery_id in claimed:
            send_delivery.delay(delivery_id)
        sent += len(claimed)
        if len(claimed) < dispatch.CLAIM_LIMIT:
            return sent


@shared_task(acks_late=True, time_limit=300, soft_time_limit=270)
def fan_out_alerts(alert_ids: list[int]) -> int:
    """Route and group freshly raised alerts; send what is due now. Returns deliveries sent off."""
    if fanout.notifications_fan_out(alert_ids=alert_ids):
        return _send_due()
    return 0


@shared_task(acks_late=True, time_limit=300, soft_time_limit=270)
def dispatch_notifications() -> int:
    """Beat, every minute: fan out alerts whose fan-out task was lost (the notifications outbox),
    re-open expired snoozes (and notify them again), send due deliveries and re-send those whose
    task was lost."""
    owed = fanout.alerts_owed_fan_out()
    for start in range(0, len(owed), FAN_OUT_CHUNK):
        fanout.notifications_fan_out(alert_ids=owed[start : start + FAN_OUT_CHUNK])
    reopened = dispatch.snoozes_expire()
    if reopened:
        fanout.notifications_fan_out(alert_ids=reopened, repeat=True)
    for delivery_id in dispatch.deliveries_stale():
        send_delivery.delay(delivery_id)
    return _send_due()


@shared_task(bind=True, acks_late=True, time_limit=120, soft_time_limit=100, max_retries=None)
def send_delivery(self, delivery_id: int) -> str:
    """Send one delivery. The service records every attempt; its backoff (with jitter) sets the countdown."""
    outcome = dispatch.delivery_send(delivery_id=delivery_id)
    while outcome.retry_in is not None and self.request.is_eager:
        # In-process mode (no broker) has no worker to come back later: retry at once; the
        # attempts stay bounded by max_attempts.
        outcome = dispatch.delivery_send(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status
