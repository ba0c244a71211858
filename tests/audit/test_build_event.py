"""audit.services.build_event makes its unsaved AuditEvent without Model.__init__ (the
gateway builds one per call); the event must be the one __init__ would make."""

import datetime

import pytest
from django.utils import timezone

from audit.context import RequestContext, reset_context, set_context
from audit.models import AuditEvent
from audit.services import build_event, record


def _attributes(event: AuditEvent) -> dict:
    return {k: v for k, v in event.__dict__.items() if k not in ("_state", "occurred_at")}


@pytest.mark.django_db
def test_the_event_has_exactly_the_attributes_init_gives(org_a, django_assert_num_queries):
    token = set_context(RequestContext(request_id="req-1", source_ip="10.0.0.9"))
    try:
        built = build_event(
            org=org_a,
            action="tool.call",
            outcome="denied",
            details={"arguments": {"q": 1}, "token": "s3cret"},
            server="srv",
            tool="echo",
            decision="deny",
            latency_ms=1.5,
        )
    finally:
        reset_context(token)
    reference = AuditEvent(
        organization=org_a,
        action="tool.call",
        outcome="denied",
        actor_user_id=None,
        actor_label="",
        agent_id=None,
        agent_label="",
        on_behalf_of_id=None,
        on_behalf_of_label="",
        target_type="",
        target_id="",
        target_label="",
        details={"arguments": {"q": 1}, "token": "[redacted]"},
        request_id="req-1",
        source_ip="10.0.0.9",
        server="srv",
        tool="echo",
        decision="deny",
        latency_ms=1.5,
    )
    assert _attributes(built) == _attributes(reference)
    assert built.pk is None and built._state.adding and built._state.db is None
    assert abs(built.occurred_at - timezone.now()) < datetime.timedelta(seconds=5)
    with django_assert_num_queries(0):
        assert built.organization == org_a  # cached, as __init__ caches a related instance


def test_an_unknown_column_is_refused_as_init_refuses_it():
    with pytest.raises(TypeError, match="no_such_column"):
        build_event(org=None, action="x", no_such_column=1)


@pytest.mark.django_db
def test_a_built_event_saves_and_reads_back(org_a):
    saved = record(org=org_a, action="member.invited", details={"email": "a@example.com"})
    again = AuditEvent.objects.get(pk=saved.pk)
    assert (again.organization_id, again.action, again.details) == (
        org_a.pk,
        "member.invited",
        {"email": "a@example.com"},
    )
