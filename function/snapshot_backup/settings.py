"""The environment contract, read and checked in one place, once per run.

``load_settings`` turns the environment into everything a backup run needs,
the Consul connection and its token included; ``load_consul_settings`` is the
part that reaches Consul, which the operator CLI uses with its flags laid over
the environment. Nothing here is read twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .consul import DEFAULT_READ_TIMEOUT, ConsulSettings, normalize_address, retry_delays
from .environment import EnvVar
from .keys import CLUSTER_NAME, CLUSTER_NAME_RULE, normalize_prefix
from .retention import DEFAULT_KEEP_LATEST, MAX_KEEP_LATEST
from .token_source import resolve_token

DEFAULT_RETRIES = 3
MAX_RETRIES = 6
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})

SecretsClientFactory = Callable[[], Any]


class SettingsError(ValueError):
    """The environment does not describe a runnable backup."""


@dataclass(frozen=True)
class BackupSettings:
    """One cluster's backup: where it goes, and how to reach Consul (token included)."""

    cluster_name: str
    bucket: str
    prefix: str
    consul: ConsulSettings
    keep_latest: int = DEFAULT_KEEP_LATEST

    def __repr__(self) -> str:  # ConsulSettings keeps the token out of its own repr
        return (
            f"BackupSettings(cluster={self.cluster_name!r}, bucket={self.bucket!r}, "
            f"prefix={self.prefix!r}, consul={self.consul!r})"
        )


def load_settings(env: Mapping[str, str], secrets_client: SecretsClientFactory) -> BackupSettings:
    """Everything a run needs, from ``env``; the token is read from Secrets Manager once."""
    cluster = _required(env, EnvVar.CLUSTER_NAME)
    if not CLUSTER_NAME.fullmatch(cluster):
        raise SettingsError(f"{EnvVar.CLUSTER_NAME} {cluster!r} must be {CLUSTER_NAME_RULE}")
    bucket = _required(env, EnvVar.BACKUP_BUCKET)
    keep_text = _text(env, EnvVar.KEEP_LATEST) or str(DEFAULT_KEEP_LATEST)
    if not keep_text.isdigit() or not 1 <= int(keep_text) <= MAX_KEEP_LATEST:
        raise SettingsError(
            f"{EnvVar.KEEP_LATEST} must be a whole number from 1 to {MAX_KEEP_LATEST}"
        )
    consul = load_consul_settings(env, secrets_client)
    return BackupSettings(
        cluster_name=cluster,
        bucket=bucket,
        prefix=normalize_prefix(env.get(EnvVar.BACKUP_PREFIX)),
        consul=consul,
        keep_latest=int(keep_text),
    )


def load_consul_settings(
    env: Mapping[str, str], secrets_client: SecretsClientFactory
) -> ConsulSettings:
    """How to reach Consul: address, token, datacenter, TLS, timeouts and retries."""
    try:
        address = normalize_address(_required(env, EnvVar.CONSUL_HTTP_ADDR))
    except ValueError as exc:
        raise SettingsError(f"{EnvVar.CONSUL_HTTP_ADDR}: {exc}") from exc
    read_timeout_text = _text(env, EnvVar.CONSUL_READ_TIMEOUT)
    try:
        read_timeout = float(read_timeout_text) if read_timeout_text else DEFAULT_READ_TIMEOUT
    except ValueError as exc:
        raise SettingsError(
            f"{EnvVar.CONSUL_READ_TIMEOUT} {read_timeout_text!r} is not seconds"
        ) from exc
    retries_text = _text(env, EnvVar.CONSUL_RETRIES) or str(DEFAULT_RETRIES)
    if not retries_text.isdigit() or int(retries_text) > MAX_RETRIES:
        raise SettingsError(
            f"{EnvVar.CONSUL_RETRIES} must be a whole number from 0 to {MAX_RETRIES}"
        )
    stale = _flag(env, EnvVar.CONSUL_STALE)
    secret_arn = _text(env, EnvVar.CONSUL_TOKEN_SECRET_ARN) or None
    # Last: everything else is checked before Secrets Manager is asked.
    token = resolve_token(env, secret_arn, secrets_client)
    return ConsulSettings(
        address=address,
        token=token,
        token_secret_arn=secret_arn,
        datacenter=_text(env, EnvVar.CONSUL_DATACENTER) or None,
        stale=stale,
        ca_cert_file=_text(env, EnvVar.CONSUL_CACERT) or None,
        ca_cert_pem=_text(env, EnvVar.CONSUL_CACERT_PEM) or None,
        read_timeout=read_timeout,
        retry_delays=retry_delays(int(retries_text)),
    )


def _text(env: Mapping[str, str], name: EnvVar) -> str:
    return (env.get(name) or "").strip()


def _flag(env: Mapping[str, str], name: EnvVar) -> bool:
    value = _text(env, name).lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


def _required(env: Mapping[str, str], name: EnvVar) -> str:
    value = _text(env, name)
    if not value:
        raise SettingsError(f"{name} is required")
    return value
