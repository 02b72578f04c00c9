from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from portal import credits
from portal.access import request_user
from portal.errors import InsufficientCredits
from portal.models import ApiToken, CreditTransaction, Membership, Project


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

    list_display = ("created_at", "project", "kind", "amount", "job", "user", "reason")
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
