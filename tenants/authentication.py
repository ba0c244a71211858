"""Bearer-secret authentication shared by the REST API (personal tokens) and the gateway (agent
keys): prefix lookup, then a constant-time hash check; expired and revoked secrets fail."""

from django.conf import settings
from django.utils import timezone

from tenants import secrets
from tenants.models import AgentKey, PersonalAccessToken


def _touch(model: type, pk: int, last_used_at: object) -> None:
    # Throttled so that a busy key does not write on every call.
    now = timezone.now()
    resolution = settings.KEY_LAST_USED_RESOLUTION
    if last_used_at is None or (now - last_used_at).total_seconds() >= resolution:  # type: ignore[operator]
        model.objects.filter(pk=pk).update(last_used_at=now)


def agent_key_authenticate(plaintext: str) -> AgentKey | None:
    """The usable key (with its agent and organization) for this plaintext, or None."""
    prefix = secrets.parse_prefix(plaintext, secrets.AGENT_KEY_KIND)
    if prefix is None:
        return None
    key = (
        AgentKey.objects.usable()
        .select_related("agent", "organization", "agent__acting_for", "agent__team")
        .filter(prefix=prefix)
        .first()
    )
    if key is None or not secrets.matches(plaintext, key.key_hash) or not key.agent.is_active:
        return None
    _touch(AgentKey, key.pk, key.last_used_at)
    return key


def personal_token_authenticate(plaintext: str) -> PersonalAccessToken | None:
    prefix = secrets.parse_prefix(plaintext, secrets.PERSONAL_TOKEN_KIND)
    if prefix is None:
        return None
    token = PersonalAccessToken.objects.select_related("user").filter(prefix=prefix).first()
    if (
        token is None
        or token.status != "active"
        or not secrets.matches(plaintext, token.token_hash)
    ):
        return None
    if not token.user.is_active:
        return None
    _touch(PersonalAccessToken, token.pk, token.last_used_at)
    return token
