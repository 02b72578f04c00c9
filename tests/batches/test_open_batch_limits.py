"""Open batches cannot hold a device's slots forever (issue 17.9): a per-project share, a lifetime."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from batches import scheduler, services
from batches.models import Batch
from portal.errors import Conflict
from tests.batches.conftest import drain, job_spec, jobs_of


def status(batch: Batch) -> str:
    return str(Batch.objects.get(pk=batch.pk).status)


def test_one_projects_idle_open_batches_leave_a_slot_to_another_projects_batch(submit, emu, make_member, settings):
    settings.OPEN_BATCH_SLOTS_PER_PROJECT = 1
    emu.slots = 2
    emu.save(update_fields=["slots"])
    first, second = submit(1, open=True), submit(1, open=True)
    drain(emu)  # both idle now, their one job each done
    other = make_member()
    theirs = services.create_batch(
        other.project, other.user, sequence_builder=first.sequence_builder, jobs=[job_spec()], device_type=emu.name
    )
    scheduler.advance(emu.pk)
    assert (status(first), status(second), status(theirs)) == ("RUNNING", "PENDING", "RUNNING")


def test_the_share_of_open_batches_is_a_setting(submit, emu, settings):
    settings.OPEN_BATCH_SLOTS_PER_PROJECT = 2
    emu.slots = 2
    emu.save(update_fields=["slots"])
    first, second = submit(1, open=True), submit(1, open=True)
    scheduler.advance(emu.pk)
    assert (status(first), status(second)) == ("RUNNING", "RUNNING")


def test_a_closed_batch_of_the_same_project_is_not_held_back_by_its_open_ones(submit, emu, settings):
    settings.OPEN_BATCH_SLOTS_PER_PROJECT = 1
    emu.slots = 2
    emu.save(update_fields=["slots"])
    held, waiting, closed = submit(1, open=True), submit(1, open=True), submit(1)
    scheduler.advance(emu.pk)
    assert (status(held), status(waiting), status(closed)) == ("RUNNING", "PENDING", "RUNNING")


def test_an_open_batch_older_than_its_lifetime_is_closed_its_jobs_finish_and_it_ends(submit, emu, member, settings):
    settings.OPEN_BATCH_MAX_SECONDS = 600
    settings.OPEN_BATCH_TIMEOUT = 10_000  # never idle long enough: only the lifetime ends it
    batch = submit(1, open=True)
    drain(emu)
    later = timezone.now() + timedelta(seconds=settings.OPEN_BATCH_MAX_SECONDS - 60)
    with time_machine.travel(later):
        services.add_jobs(batch, [job_spec()], by=member.user)  # activity renews the idle clock only
        scheduler.advance(emu.pk)
        assert Batch.objects.get(pk=batch.pk).open
    with time_machine.travel(later + timedelta(seconds=120)):
        scheduler.advance(emu.pk)
        closed = Batch.objects.get(pk=batch.pk)
        assert not closed.open
        with pytest.raises(Conflict, match="closed: jobs can no longer be added"):
            services.add_jobs(closed, [job_spec()], by=member.user)
        drain(emu)
    assert status(batch) == "DONE"
    assert [job.status for job in jobs_of(batch)] == ["DONE", "DONE"], "the paid jobs still ran"


def test_the_devices_page_states_the_open_batch_limits(member, devices, client, settings):
    settings.OPEN_BATCH_SLOTS_PER_PROJECT, settings.OPEN_BATCH_MAX_SECONDS = 1, 3600
    client.force_login(member.user)
    page = client.get("/devices/").content.decode()
    assert "at most 1 slot per project, each open for up to 1 h 0 min" in page
