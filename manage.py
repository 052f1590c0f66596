#!/usr/bin/env python
import os
import sys

# Commands that need a PostgreSQL session of their own run on DATABASE_DIRECT_URL when it is set,
# never through the transaction-mode pooler DATABASE_URL may name (see .env.example, "Database").
DIRECT_COMMANDS = {"migrate", "dbshell", "backup_db", "restore_db", "createcachetable"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "churnshield.settings.local")
    direct_url = os.environ.get("DATABASE_DIRECT_URL")
    if direct_url and len(sys.argv) > 1 and sys.argv[1] in DIRECT_COMMANDS:
        os.environ.update(DATABASE_URL=direct_url, DATABASE_POOLED="false")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
