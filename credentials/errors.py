"""Errors of the credentials app. Messages tell the user (or operator) what to do and never
carry a secret: not a token, not a key, not a ciphertext."""

from tenants.errors import DomainError


class VaultError(DomainError):
    """A secret cannot be encrypted or decrypted (unknown key, tampered or moved blob, missing
    master key). The gateway fails closed on it."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "vault") -> None:
        super().__init__(message, field=field, code=code)


class CredentialError(DomainError):
    """An OAuth provider or connection operation failed (network, provider error, bad config)."""

    def __init__(
        self, message: str, *, field: str | None = None, code: str = "credential_error"
    ) -> None:
        super().__init__(message, field=field, code=code)


class ConsentRequired(CredentialError):
    """The user has no usable grant for this provider: they must (re)connect at `consent_url`."""

    def __init__(
        self,
        message: str = "Connect your account first.",
        *,
        consent_url: str,
        provider_slug: str = "",
        code: str = "consent_required",
    ) -> None:
        super().__init__(message, code=code)
        self.consent_url = consent_url
        self.provider_slug = provider_slug


class ProviderError(CredentialError):
    """The provider answered with an OAuth error (`error` is the RFC 6749 code, e.g.
    invalid_grant) or an unusable response."""

    def __init__(
        self,
        message: str,
        *,
        error: str = "",
        status: int | None = None,
        transient: bool = False,
        code: str = "provider_error",
    ) -> None:
        super().__init__(message, code=code)
        self.error = error
        self.status = status
        # Transient failures (network, 5xx, 429) are retried later; nothing is deleted on them.
        self.transient = transient


class ConsentFlowError(CredentialError):
    """The browser came back to the callback with something we refuse (bad, missing, expired or
    replayed state; denied consent; provider error). Shown as a clear page; nothing is stored."""

    def __init__(self, message: str, *, code: str = "consent_flow") -> None:
        super().__init__(message, code=code)


class UnsafeURLError(CredentialError):
    """A provider URL points somewhere we refuse to send requests (SSRF guard)."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "unsafe_url") -> None:
        super().__init__(message, field=field, code=code)
