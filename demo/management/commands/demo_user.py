"""`manage.py demo_user`: make sure the demo admin exists and print how to sign in."""

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from demo.users import ADMIN_USERNAME, VIEWER_USERNAME, demo_password, ensure_demo_admin


class Command(BaseCommand):
    help = "Ensure the demo admin user exists and print the sign-in details."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="Set the password back to DEMO_PASSWORD even if it was changed.",
        )
        parser.add_argument(
            "--port", default=os.environ.get("PORT", "8000"), help="Port the server listens on (default $PORT or 8000)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        admin = ensure_demo_admin(reset_password=options["reset_password"])
        users = get_user_model().objects
        csm = users.filter(groups__name="csm", is_active=True).order_by("username").first()
        viewer = users.filter(username=VIEWER_USERNAME, groups__name="viewer").first()
        base = f"http://127.0.0.1:{options['port']}"
        lines = [
            f"Sign in at {base}/signin (Django admin: {base}/admin/)",
            f"  admin:  {ADMIN_USERNAME} / {demo_password()}",
        ]
        if not admin.check_password(demo_password()):
            lines[-1] = f"  admin:  {ADMIN_USERNAME} (password was changed; --reset-password sets it back)"
        if csm is not None:
            lines.append(f"  csm:    {csm.get_username()} (same password unless changed)")
        if viewer is not None:
            lines.append(f"  viewer: {viewer.get_username()} (same password unless changed)")
        self.stdout.write("\n".join(lines))
