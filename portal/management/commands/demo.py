from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from backends.devices import sync_devices
from portal import credits
from portal.models import ApiToken, Membership, Project
from portal.onboarding import python_snippet
from portal.tokens import create_token


class Command(BaseCommand):
    help = "Create the demo user, project (with credits) and API token, and print how to use them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-password")

    def handle(self, *args: Any, **options: Any) -> None:
        sync_devices()
        User = get_user_model()
        with transaction.atomic():
            user, created = User.objects.get_or_create(
                username=options["username"], defaults={"is_staff": True, "is_superuser": True}
            )
            if created:
                user.set_password(options["password"])
                user.save()
            project, new_project = Project.objects.get_or_create(name="Demo project")
            Membership.objects.get_or_create(user=user, project=project, defaults={"role": Membership.Role.ADMIN})
            if new_project:
                credits.grant(project, 100_000, by=None, reason="Demo credits")
            # A fresh token each start: the plain token is only known when it is created.
            ApiToken.objects.filter(user=user, name="demo").delete()
            _, token = create_token(user, "demo")
        url = options["url"]
        self.stdout.write(
            f"\nTweezer is running at {url}\n"
            f"  login:    {options['username']} / {options['password']}\n"
            f"  project:  {project.pk}\n"
            f"  token:    {token}\n\n"
            "Submit the seed's open-batch example with the real SDK (paste into .venv/bin/python):\n\n"
            + python_snippet(token=token, project=project.pk, url=url)
        )
