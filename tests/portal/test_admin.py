"""Issue 21's models in the Django admin, for platform staff: spending caps."""

from __future__ import annotations

import pytest

from portal.models import SpendingCap

pytestmark = pytest.mark.django_db


def test_staff_see_and_set_a_member_s_spending_cap_in_the_django_admin(admin_client, admin_user, make_member):
    admin = make_member()
    other = make_member(role="MEMBER", project=admin.project)
    response = admin_client.post(
        "/admin/portal/spendingcap/add/",
        {"project": admin.project.pk, "user": other.user.pk, "amount": 700, "period": "TOTAL"},
    )
    assert response.status_code == 302, response.content[:500]
    cap = SpendingCap.objects.get()
    assert (cap.user, cap.amount, cap.period, cap.set_by) == (other.user, 700, "TOTAL", admin_user)
    listing = admin_client.get("/admin/portal/spendingcap/").content.decode()
    assert other.user.username in listing and "700" in listing and "in total" in listing
    assert admin_client.get(f"/admin/portal/spendingcap/{cap.pk}/change/").status_code == 200


def test_the_admin_refuses_a_cap_for_someone_outside_the_project(admin_client, make_member):
    admin = make_member()
    stranger = make_member()
    response = admin_client.post(
        "/admin/portal/spendingcap/add/",
        {"project": admin.project.pk, "user": stranger.user.pk, "amount": 5, "period": "MONTH"},
    )
    assert response.status_code == 200 and "caps are for members" in response.content.decode()
    assert not SpendingCap.objects.exists()
