"""The one role -> permission matrix. The UI, the REST API and every later feature ask it.

Roles are cumulative in spirit but listed explicitly so that a reviewer can read, in one place,
exactly what each role may do. An auditor reads and exports and changes nothing.
"""

from enum import StrEnum

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    APPROVER = "approver", "Approver"
    AUDITOR = "auditor", "Auditor"
    MEMBER = "member", "Member"


class Perm(StrEnum):
    VIEW_ORG = "view_org"
    MANAGE_ORG = "manage_org"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_TEAMS = "manage_teams"
    MANAGE_AGENTS = "manage_agents"
    SUBMIT_SERVER = "submit_server"
    APPROVE_SERVER = "approve_server"
    EDIT_POLICY = "edit_policy"
    READ_POLICY = "read_policy"
    READ_AUDIT = "read_audit"
    EXPORT_AUDIT = "export_audit"
    MANAGE_PROVIDERS = "manage_providers"
    CONNECT_ACCOUNTS = "connect_accounts"


_ALL = frozenset(Perm)

ROLE_PERMISSIONS: dict[str, frozenset[Perm]] = {
    Role.OWNER: _ALL,
    Role.ADMIN: _ALL - {Perm.MANAGE_ORG},
    Role.APPROVER: frozenset(
        {
            Perm.VIEW_ORG,
            Perm.SUBMIT_SERVER,
            Perm.APPROVE_SERVER,
            Perm.READ_POLICY,
            Perm.READ_AUDIT,
            Perm.CONNECT_ACCOUNTS,
        }
    ),
    Role.AUDITOR: frozenset({Perm.VIEW_ORG, Perm.READ_POLICY, Perm.READ_AUDIT, Perm.EXPORT_AUDIT}),
    Role.MEMBER: frozenset({Perm.VIEW_ORG, Perm.SUBMIT_SERVER, Perm.CONNECT_ACCOUNTS}),
}

# Only an owner may grant or take away the owner role (an admin cannot promote themselves).
ROLES_ASSIGNABLE_BY: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(Role.values),
    Role.ADMIN: frozenset(Role.values) - {Role.OWNER},
}


def role_has(role: str, perm: Perm) -> bool:
    return perm in ROLE_PERMISSIONS.get(role, frozenset())


def can_manage_members(role: str) -> bool:
    return role_has(role, Perm.MANAGE_MEMBERS)


def can_submit_server(role: str) -> bool:
    return role_has(role, Perm.SUBMIT_SERVER)


def can_approve_server(role: str) -> bool:
    return role_has(role, Perm.APPROVE_SERVER)


def can_edit_policy(role: str) -> bool:
    return role_has(role, Perm.EDIT_POLICY)


def can_read_audit(role: str) -> bool:
    return role_has(role, Perm.READ_AUDIT)


def can_manage_agents(role: str) -> bool:
    return role_has(role, Perm.MANAGE_AGENTS)


def can_assign_role(actor_role: str, target_role: str) -> bool:
    return target_role in ROLES_ASSIGNABLE_BY.get(actor_role, frozenset())
