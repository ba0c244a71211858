from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest


class InvitationOnlyAccountAdapter(DefaultAccountAdapter):
    """Nobody signs up on their own: people join through an organization's invitation link,
    which creates their account (tenants.views.invitation_accept)."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False
