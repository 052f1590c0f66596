"""Bodies about alerts built outside a serializer: the admin's bell, which its script polls."""

from alerts.selectors import AlertBell


def alert_bell_body(bell: AlertBell) -> dict:
    return {
        "count": bell.count,
        "alerts": [
            {
                "id": alert.pk,
                "title": alert.title,
                "severity": alert.severity,
                "createdAt": alert.created_at.isoformat(),
                "customer": alert.customer.name if alert.customer else None,
            }
            for alert in bell.alerts
        ],
    }
