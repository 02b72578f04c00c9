from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import credits
from portal.models import Project


class Command(BaseCommand):
    help = "Grant credits to a project (by id or exact name)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project")
        parser.add_argument("amount", type=int)
        parser.add_argument("--reason", default="Granted from the command line")

    def handle(self, *args: Any, **options: Any) -> None:
        ident = options["project"]
        project = Project.objects.filter(name=ident).first()
        if project is None:
            try:
                project = Project.objects.filter(pk=ident).first()
            except Exception:  # noqa: BLE001 - not a UUID
                project = None
        if project is None:
            raise CommandError(f"No project with id or name {ident!r}.")
        if options["amount"] <= 0:
            raise CommandError("The amount must be a positive number of credits.")
        credits.grant(project, options["amount"], by=None, reason=options["reason"])
        project.refresh_from_db()
        self.stdout.write(f"Granted {options['amount']} credits to {project.name}; balance {project.balance}.")
