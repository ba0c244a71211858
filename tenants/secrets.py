"""Generation and verification of bearer secrets (agent keys, personal tokens, invitations).

A secret looks like `<kind>_<prefix>_<random>`. The prefix is public and indexed (for lookup),
the whole secret is stored only as SHA-256. The random part carries 256 bits, so a fast hash is
the right choice (no password-style stretching needed) and constant-time comparison guards
against timing attacks on the hash check.
"""

import hashlib
import hmac
import secrets as _secrets
from dataclasses import dataclass

AGENT_KEY_KIND = "mgw"
PERSONAL_TOKEN_KIND = "mgp"
_PREFIX_LEN = 12


@dataclass(frozen=True)
class IssuedSecret:
    plaintext: str
    prefix: str
    digest: str


def hash_secret(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def issue_secret(kind: str) -> IssuedSecret:
    prefix = _secrets.token_hex(_PREFIX_LEN // 2)
    plaintext = f"{kind}_{prefix}_{_secrets.token_urlsafe(32)}"
    return IssuedSecret(plaintext=plaintext, prefix=prefix, digest=hash_secret(plaintext))


def parse_prefix(plaintext: str, kind: str) -> str | None:
    """The public prefix of a well-formed secret of this kind, or None."""
    if not plaintext or len(plaintext) > 200:
        return None
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != kind or len(parts[1]) != _PREFIX_LEN or not parts[2]:
        return None
    return parts[1]


def matches(plaintext: str, digest: str) -> bool:
    return hmac.compare_digest(hash_secret(plaintext), digest)


def new_token() -> tuple[str, str]:
    """A URL-safe single-use token (invitations) and its digest."""
    token = _secrets.token_urlsafe(32)
    return token, hash_secret(token)
