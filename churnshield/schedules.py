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
    # Issue 7: backups, retention (ages in settings.RETENTION_DAYS). All times UTC.
    "backup-database-daily": {
        "task": "monitoring.tasks.backup_database",
        "crontab": {"minute": "30", "hour": "1"},
    },
    "retention-daily": {
        "task": "monitoring.tasks.run_retention",
        "crontab": {"minute": "30", "hour": "3"},
    },
}
