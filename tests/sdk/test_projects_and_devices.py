"""Account (projects) and device-spec calls of the real SDK."""

from __future__ import annotations

from typing import Any

import pytest
from pasqal_cloud.endpoints import Endpoints
from pasqal_cloud.errors import BatchCreationError, ProjectFetchingError, ProjectNotFoundError

try:
    from pasqal_cloud.pasqal_cloud_client import PasqalCloudClient
except ImportError:  # pasqal-cloud 0.22 (the line pulser-pasqal pins)
    from pasqal_cloud import SDK as PasqalCloudClient  # type: ignore[no-redef]  # older name, same API

from backends.models import Device
from portal.models import Project
from tests.factories import MembershipFactory, ProjectFactory
from tests.sdk.helpers import omega_sequence


def test_get_all_projects_lists_the_users_active_projects(sdk, sdk_for, member):
    second: Any = MembershipFactory(user=member.user, project=ProjectFactory(name="Zeeman scans")).project
    MembershipFactory(user=member.user, project=ProjectFactory(name="Old", status=Project.Status.ARCHIVED))
    ProjectFactory(name="Someone else's")
    projects = sdk.get_all_projects()
    assert [(p.id, p.name) for p in projects] == [
        (str(member.project_id), member.project.name),
        (str(second.pk), "Zeeman scans"),
    ]


def test_switch_to_project_then_submit_there(sdk, member, devices):
    Device.objects.filter(name="EMU_FREE").update(status=Device.Status.MAINTENANCE)
    second: Any = MembershipFactory(user=member.user, project=ProjectFactory(name="Zeeman scans")).project
    assert sdk.switch_to_project(str(second.pk)) == str(second.pk)
    batch = sdk.create_batch(omega_sequence(), [{"runs": 5, "variables": {"omega_max": 1}}], device_type="EMU_FREE")
    assert batch.project_id == str(second.pk)
    stranger: Any = ProjectFactory(name="Not mine")
    with pytest.raises(ProjectNotFoundError):
        sdk.switch_to_project(str(stranger.pk))
    sdk.project_id = str(stranger.pk)  # bypass the client-side check: the server refuses too
    with pytest.raises(BatchCreationError) as caught:
        sdk.create_batch(omega_sequence(), [{"runs": 5, "variables": {"omega_max": 1}}], device_type="EMU_FREE")
    assert "404" in str(caught.value) and "not a member" in str(caught.value)


def test_projects_with_a_bad_token_is_401(sdk_for, member, devices):
    with pytest.raises(ProjectFetchingError) as caught:
        sdk_for(member, token="twz_wrong").get_all_projects()
    assert "401" in str(caught.value)


def test_device_specs_without_credentials_fall_back_to_public_specs(live_server, devices):
    Device.objects.filter(name="FRESNEL").update(is_public=False)
    anonymous = PasqalCloudClient(
        endpoints=Endpoints(core=f"{live_server.url}/core", account=f"{live_server.url}/account")
    )
    specs = anonymous.get_device_specs_dict()
    assert set(specs) == {"EMU_FREE", "EMU_SV", "EMU_MPS"}
    assert specs["EMU_FREE"] == Device.objects.get(name="EMU_FREE").specs
