from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from portal import credits
from portal.access import request_user
from portal.errors import InsufficientCredits, TweezerError
from portal.models import ApiToken, CreditTransaction, Membership, Project, SpendingCap


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Membership
    extra = 1


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "status", "balance", "created_at")
    readonly_fields = ("balance",)
    inlines = [MembershipInline]


@admin.register(CreditTransaction)
class CreditTransactionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Staff add GRANT / ADJUSTMENT rows here; the ledger is never edited after the fact."""

    list_display = ("created_at", "project", "kind", "amount", "job", "user", "reason", "action")
    list_filter = ("kind",)
    fields = ("project", "kind", "amount", "reason")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: CreditTransaction, form: object, change: bool) -> None:
        try:
            if obj.kind == CreditTransaction.Kind.GRANT and obj.amount > 0:
                credits.grant(obj.project, obj.amount, by=request_user(request), reason=obj.reason)
            elif obj.kind in (CreditTransaction.Kind.GRANT, CreditTransaction.Kind.ADJUSTMENT):
                credits.adjust(
                    obj.project, obj.amount, by=request_user(request), reason=obj.reason or "Staff adjustment"
                )
            else:
                messages.error(request, "Only GRANT and ADJUSTMENT rows can be added by hand.")
        except InsufficientCredits as exc:
            # The balance may not go below zero: say so instead of a server error.
            messages.error(request, exc.message)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "token_hash")


class SpendingCapForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = SpendingCap
        fields = ("project", "user", "amount", "period")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        project, user = data.get("project"), data.get("user")
        if project and user and not Membership.objects.filter(project=project, user=user).exists():
            self.add_error("user", f"{user} is not a member of {project}: caps are for members.")
        return data


@admin.register(SpendingCap)
class SpendingCapAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Issue 21.4: staff see and set members' caps; saved through `credits.set_cap`, as project ADMINs do."""

    form = SpendingCapForm
    list_display = ("project", "user", "amount", "period", "set_by", "updated_at")
    list_filter = ("period",)
    search_fields = ("project__name", "user__username")
    readonly_fields = ("set_by", "updated_at")

    def save_model(self, request: HttpRequest, obj: SpendingCap, form: object, change: bool) -> None:
        try:
            saved = credits.set_cap(obj.project, obj.user, obj.amount, obj.period, by=request_user(request))
        except TweezerError as exc:
            messages.error(request, exc.message)
            return
        if saved is not None:
            obj.pk = saved.pk
