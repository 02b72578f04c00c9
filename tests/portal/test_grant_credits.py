"""`manage.py grant_credits PROJECT AMOUNT --reason …`."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from portal import credits
from portal.models import CreditTransaction


def test_grant_credits_by_name_and_by_id_records_a_grant_with_the_reason(make_member):
    project = make_member(credits=0).project
    out = StringIO()
    call_command("grant_credits", project.name, "1200", "--reason", "ERC grant 2027", stdout=out)
    call_command("grant_credits", str(project.pk), "300", stdout=out)
    assert credits.balance_of(project) == 1500
    rows = list(
        CreditTransaction.objects.filter(project=project).order_by("id").values_list("kind", "amount", "reason")
    )
    assert rows == [("GRANT", 1200, "ERC grant 2027"), ("GRANT", 300, "Granted from the command line")]
    assert "balance 1500" in out.getvalue()


@pytest.mark.parametrize(("ident", "amount", "message"), [("nope", "10", "No project"), (None, "0", "positive")])
def test_grant_credits_refuses_unknown_projects_and_non_positive_amounts(make_member, ident, amount, message):
    project = make_member(credits=0).project
    with pytest.raises(CommandError, match=message):
        call_command("grant_credits", ident or project.name, amount)
    assert not CreditTransaction.objects.filter(project=project).exists()
