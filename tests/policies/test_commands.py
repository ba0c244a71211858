"""manage.py policy_apply / policy_export: the git workflow (export, edit, apply) from a shell."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from policies.models import Policy, PolicyRevision
from tests.factories import AgentFactory
from tests.policies.factories import approved_server

DOC = """\
toolGroups:
  readers: ["tickets/list_*", "tickets.get_ticket"]
policies:
  - name: triage
    consumer: triage-bot
    allow:
      toolGroups: ["readers"]
    deny:
      tools: ["tickets.delete_ticket"]
"""


@pytest.fixture
def catalog(org_a):
    approved_server(org_a, "tickets")
    AgentFactory(organization=org_a, slug="triage-bot")
    return org_a


def run(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_dry_run_then_apply_then_export_round_trips(catalog, tmp_path):
    path = tmp_path / "policies.yaml"
    path.write_text(DOC)
    out, _ = run("policy_apply", "--org", "acme", str(path), "--dry-run")
    assert "+ policy 'triage' added" in out and "dry run" in out
    assert not Policy.objects.exists()
    out, _ = run("policy_apply", "--org", "acme", str(path))
    assert "Applied: tool group 'readers' created, policy 'triage' created." in out
    assert PolicyRevision.objects.filter(source="cli").count() == 2
    assert AuditEvent.objects.get(action="policy.created").actor_user_id is None
    out, _ = run("policy_export", "--org", "acme")
    assert out == DOC
    out, _ = run("policy_apply", "--org", "acme", str(path))
    assert "Nothing to change" in out


def test_errors_name_file_location_and_line_and_apply_nothing(catalog, tmp_path, row_counts):
    path = tmp_path / "bad.yaml"
    path.write_text(DOC.replace("tickets.delete_ticket", "tickets.drop_table"))
    before = row_counts()
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was applied"):
        call_command("policy_apply", "--org", "acme", str(path), stdout=StringIO(), stderr=err)
    assert f"{path}: policies[0].deny.tools[0] (line 9): unknown tool 'tickets.drop_table'" in (
        err.getvalue()
    )
    assert row_counts() == before


def test_unknown_org_file_or_actor(catalog, tmp_path, bob):
    with pytest.raises(CommandError, match="no organization"):
        run("policy_apply", "--org", "nope", "x.yaml")
    with pytest.raises(CommandError, match="no such file"):
        run("policy_apply", "--org", "acme", str(tmp_path / "missing.yaml"))
    path = tmp_path / "p.yaml"
    path.write_text(DOC)
    with pytest.raises(CommandError, match="does not allow"):
        run("policy_apply", "--org", "acme", str(path), "--actor", bob.email)
    assert not Policy.objects.exists()
