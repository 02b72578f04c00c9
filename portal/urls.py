from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import views
from portal.api import mount

api = mount()

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChange.as_view(), name="password_change"),
    path("projects/switch/", views.switch_project, name="switch_project"),
    path("devices/", views.devices, name="devices"),
    path("credits/", views.credits, name="credits"),
    path("credits/ledger.csv", views.credits_csv, name="credits_csv"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<uuid:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("batches/", include("batches.urls")),
    path("jobs/", include("jobs.urls")),
    path("admin/", admin.site.urls),
    path("", api.urls),
]
