from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from backends.api import router as devices
from batches import webhook_views
from batches.api import router as batches
from batches.workload_api import router as workloads
from jobs.api import results_router
from jobs.api import router as jobs
from portal import credit_views, views
from portal.account_api import router as account
from portal.api import api

api.add_router("/core/", batches)
api.add_router("/core/", jobs)
api.add_router("/core/", workloads)
api.add_router("/core/", devices)
api.add_router("/account/", account)
api.add_router("/", results_router)

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChange.as_view(), name="password_change"),
    path("projects/switch/", views.switch_project, name="switch_project"),
    path("devices/", views.devices, name="devices"),
    path("credits/", views.credits, name="credits"),
    path("credits/ledger.csv", views.credits_csv, name="credits_csv"),
    path("credits/overview/", credit_views.overview, name="credits_overview"),
    path("credits/overview/ledger-group/", credit_views.ledger_group, name="credits_ledger_group"),
    path("credits/caps/", credit_views.set_cap, name="credits_set_cap"),
    path("tokens/", views.tokens, name="tokens"),
    path("webhooks/", webhook_views.webhook_list, name="webhooks"),
    path("webhooks/add/", webhook_views.webhook_add, name="webhook_add"),
    path("webhooks/<uuid:endpoint_id>/delete/", webhook_views.webhook_delete, name="webhook_delete"),
    path("webhooks/deliveries/<int:delivery_id>/redeliver/", webhook_views.webhook_redeliver, name="webhook_redeliver"),
    path("tokens/<uuid:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("batches/", include("batches.urls")),
    path("jobs/", include("jobs.urls")),
    path("admin/", admin.site.urls),
    path("", api.urls),
]
