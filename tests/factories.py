"""factory_boy factories; each test's own setup stays visible in the test."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from portal import credits
from portal.models import Membership, Project


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"physicist{n}")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def save_password(obj: Any, create: bool, extracted: Any, **kwargs: Any) -> None:  # noqa: N805
        if create:
            obj.save()


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Project {n}")

    @factory.post_generation
    def credits(obj: Project, create: bool, extracted: int | None, **kwargs: Any) -> None:  # noqa: N805
        amount = 100_000 if extracted is None else extracted
        if create and amount:
            credits.grant(obj, amount, by=None, reason="test credits")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    project = factory.SubFactory(ProjectFactory)
    role = Membership.Role.ADMIN
