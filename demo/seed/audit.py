"""Demo step: an auditor who can read, export and verify the trail (and change nothing), and a
one-year retention on the demo organization."""

import secrets

from demo.seed.context import DemoContext
from tenants.models import Membership, User
from tenants.permissions import Role

AUDITOR_EMAIL = "audrey@demo.test"


def seed(ctx: DemoContext) -> None:
    from audit.retention import retention_for, retention_set

    org = ctx.org
    auditor = User.objects.filter(email=AUDITOR_EMAIL).first()
    password = None
    if auditor is None:
        password = secrets.token_urlsafe(12)
        auditor = User.objects.create_user(
            email=AUDITOR_EMAIL, password=password, name="Audrey Auditor"
        )
    Membership.objects.get_or_create(
        organization=org, user=auditor, defaults={"role": Role.AUDITOR}
    )
    if retention_for(org=org) is None:
        retention_set(org=org, actor=ctx.admin, retention_days=365, legal_hold=False)
    ctx.summary["auditor"] = {
        "email": AUDITOR_EMAIL,
        "password": password or "(unchanged: set on the first run)",
        "audit_trail": f"/o/{org.slug}/audit/",
        "verify": "python manage.py audit_seal && python manage.py audit_verify --org " + org.slug,
    }
