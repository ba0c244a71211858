"""A server's secret values (static headers, stdio env) go through the vault, bound to the
organization, the field and the server's uid; only their names are stored in clear."""

import json
from typing import Any

from credentials import vault

HEADERS_PURPOSE = "catalog.server.static_headers"
ENV_PURPOSE = "catalog.server.env"


def _encrypt(server: Any, purpose: str, values: dict[str, str]) -> str:
    if not values:
        return ""
    return vault.encrypt(
        org=server.organization, purpose=purpose, row_uid=server.uid, plaintext=json.dumps(values)
    )


def _decrypt(server: Any, purpose: str, blob: str) -> dict[str, str]:
    if not blob:
        return {}
    return json.loads(
        vault.decrypt(org=server.organization_id, purpose=purpose, row_uid=server.uid, blob=blob)
    )


def set_static_headers(server: Any, headers: dict[str, str]) -> None:
    server.static_header_names = sorted(headers)
    server.static_headers_blob = _encrypt(server, HEADERS_PURPOSE, headers)


def set_env(server: Any, env: dict[str, str]) -> None:
    server.env_names = sorted(env)
    server.env_blob = _encrypt(server, ENV_PURPOSE, env)


def server_static_headers(server: Any) -> dict[str, str]:
    return _decrypt(server, HEADERS_PURPOSE, server.static_headers_blob)


def server_env(server: Any) -> dict[str, str]:
    return _decrypt(server, ENV_PURPOSE, server.env_blob)
