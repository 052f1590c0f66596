"""Every periodic task, in one reviewed place. `manage.py sync_schedules` installs them into
django-celery-beat's database scheduler (run by `make run` and the Procfile's release step)."""

SCHEDULES: dict[str, dict] = {
    "portfolio-snapshot-daily": {
        "task": "predictions.tasks.take_portfolio_snapshot",
        "crontab": {"minute": "30", "hour": "0"},
    },
    "churn-causes-refresh-daily": {
        "task": "predictions.tasks.refresh_churn_causes",
        "crontab": {"minute": "45", "hour": "0"},
    },
    "score-customers-daily": {
        "task": "predictions.tasks.score_all_customers",
        "crontab": {"minute": "0", "hour": "2"},
    },
    "retrain-model-weekly": {
        "task": "predictions.tasks.retrain_model",
        "crontab": {"minute": "0", "hour": "4", "day_of_week": "sun"},
    },
    "flush-expired-tokens-daily": {
        "task": "churnshield.tasks.flush_expired_tokens",
        "crontab": {"minute": "15", "hour": "3"},
    },
    # Playbooks: due waits, retries and expired leases (SKIP LOCKED claim).
    "playbook-claim-due": {
        "task": "playbooks.tasks.claim_due_executions",
        "interval_seconds": 15,
    },
    # Maintenance: backups, retention (ages in settings.RETENTION_DAYS). All times UTC.
    "backup-database-daily": {
        "task": "monitoring.tasks.backup_database",
        "crontab": {"minute": "30", "hour": "1"},
    },
    "retention-daily": {
        "task": "monitoring.tasks.run_retention",
        "crontab": {"minute": "30", "hour": "3"},
    },
}

# --- Notifications: due deliveries (group wait, quiet hours, throttle, daily digest) ---
# The digest hour lives in the database (NotificationSettings, per user's time zone), so the
# sweep runs every minute and sends each digest when its delivery falls due.
SCHEDULES["notifications-dispatch-every-minute"] = {
    "task": "alerts.tasks.dispatch_notifications",
    "crontab": {"minute": "*"},
}

# --- Integrations: per-integration pull schedules are installed by
# integrations.services.integration_schedules_sync (run by `manage.py sync_schedules`).
SCHEDULES.update(
    {
        "integrations-webhook-sweep": {
            "task": "integrations.tasks.sweep_webhooks",
            "crontab": {"minute": "*"},
        },
        "integrations-webhook-purge-daily": {
            "task": "integrations.tasks.purge_webhook_events",
            "crontab": {"minute": "40", "hour": "3"},
        },
    }
)
