"""The role -> permission matrix: what each role may do, read in one place."""

import pytest

from tenants.permissions import (
    ROLE_PERMISSIONS,
    Perm,
    Role,
    can_approve_server,
    can_assign_role,
    can_edit_policy,
    can_manage_agents,
    can_manage_members,
    can_read_audit,
    can_submit_server,
)

WRITES = set(Perm) - {Perm.VIEW_ORG, Perm.READ_POLICY, Perm.READ_AUDIT, Perm.EXPORT_AUDIT}


def test_auditor_reads_and_exports_and_changes_nothing() -> None:
    assert can_read_audit(Role.AUDITOR)
    assert Perm.EXPORT_AUDIT in ROLE_PERMISSIONS[Role.AUDITOR]
    assert not ROLE_PERMISSIONS[Role.AUDITOR] & WRITES
    for check in (
        can_manage_members,
        can_submit_server,
        can_approve_server,
        can_edit_policy,
        can_manage_agents,
    ):
        assert not check(Role.AUDITOR), check.__name__


@pytest.mark.parametrize(
    ("role", "members", "submit", "approve", "policy", "agents"),
    [
        (Role.OWNER, True, True, True, True, True),
        (Role.ADMIN, True, True, True, True, True),
        (Role.APPROVER, False, True, True, False, False),
        (Role.MEMBER, False, True, False, False, False),
    ],
)
def test_what_each_role_may_change(role, members, submit, approve, policy, agents) -> None:  # type: ignore[no-untyped-def]
    assert can_manage_members(role) is members
    assert can_submit_server(role) is submit
    assert can_approve_server(role) is approve
    assert can_edit_policy(role) is policy
    assert can_manage_agents(role) is agents


def test_only_owners_grant_the_owner_role_and_unknown_roles_get_nothing() -> None:
    assert can_assign_role(Role.OWNER, Role.OWNER)
    assert not can_assign_role(Role.ADMIN, Role.OWNER)
    assert can_assign_role(Role.ADMIN, Role.AUDITOR)
    assert not can_assign_role(Role.MEMBER, Role.MEMBER)
    assert not can_read_audit("superuser") and not can_manage_members("")
