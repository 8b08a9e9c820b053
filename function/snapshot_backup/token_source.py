"""Where the Consul ACL token comes from: Secrets Manager in AWS, env locally.

The secret is read once per Lambda container and kept in memory only, so a
schedule of one run an hour costs one GetSecretValue per cold start. After a
rotation, Consul refuses the cached token; ``reread_token`` then reads the
secret again, once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .environment import EnvVar

_cache: dict[str, str] = {}
_lock = threading.Lock()


class TokenError(Exception):
    """The token could not be read."""


def token_from_secret(secrets_client: Any, secret_arn: str) -> str:
    with _lock:
        cached = _cache.get(secret_arn)
        if cached is not None:
            return cached
        try:
            response = secrets_client.get_secret_value(SecretId=secret_arn)
        except Exception as exc:
            raise TokenError(f"cannot read the Consul token from {secret_arn}: {exc}") from exc
        token = str(response.get("SecretString") or "").strip()
        if not token:
            raise TokenError(f"secret {secret_arn} has no SecretString holding the Consul token")
        _cache[secret_arn] = token
        return token


def reread_token(secrets_client: Any, secret_arn: str) -> str:
    """The secret's value now, not the one cached (after Consul refused that one)."""
    with _lock:
        _cache.pop(secret_arn, None)
    return token_from_secret(secrets_client, secret_arn)


def resolve_token(
    env: Mapping[str, str], secret_arn: str | None, secrets_client_factory: Any
) -> str | None:
    """The token to send, or None to use the agent's default (anonymous) token."""
    if secret_arn:
        return token_from_secret(secrets_client_factory(), secret_arn)
    return (env.get(EnvVar.CONSUL_HTTP_TOKEN) or "").strip() or None


def forget_cached_tokens() -> None:
    """Drop cached tokens (after a rotation, or between tests)."""
    with _lock:
        _cache.clear()
