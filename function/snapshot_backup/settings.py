"""The environment contract, read and checked in one place, once per run.

Both entry points load their settings here: ``load_store_settings`` is where
a cluster's snapshots are (the re-verification needs nothing more),
``load_settings`` adds what a backup needs: the Consul connection and its
token, the floor and the content-drop threshold. ``load_consul_settings`` is
the part that reaches Consul, which the operator CLI uses with its flags laid
over the environment. Nothing here is read twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .consul import DEFAULT_READ_TIMEOUT, ConsulSettings, normalize_address, retry_delays
from .environment import EnvVar
from .keys import ClusterNameError, check_cluster_name, normalize_prefix
from .retention import DEFAULT_CONTENT_DROP_PERCENT, DEFAULT_KEEP_LATEST, MAX_KEEP_LATEST
from .token_source import resolve_token

DEFAULT_RETRIES = 3
MAX_RETRIES = 6
# A read timeout beyond an hour is no timeout: Lambda stops at 15 minutes.
MAX_READ_TIMEOUT = 3600.0
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII digits: int() also takes "²" and " 7 "

SecretsClientFactory = Callable[[], Any]


class SettingsError(ValueError):
    """The environment does not describe a runnable backup."""


@dataclass(frozen=True)
class Replica:
    """The replica bucket the re-verification reads too, in its own region."""

    bucket: str
    region: str | None


@dataclass(frozen=True)
class StoreSettings:
    """Where one cluster's snapshots are: the bucket, the prefix, and the replica if any."""

    cluster_name: str
    bucket: str
    prefix: str
    replica: Replica | None = None


@dataclass(frozen=True)
class BackupSettings:
    """One cluster's backup: where it goes, how to reach Consul (token included), the floor."""

    store: StoreSettings
    consul: ConsulSettings
    keep_latest: int = DEFAULT_KEEP_LATEST
    content_drop_percent: int = DEFAULT_CONTENT_DROP_PERCENT

    @property
    def cluster_name(self) -> str:
        return self.store.cluster_name

    @property
    def bucket(self) -> str:
        return self.store.bucket

    @property
    def prefix(self) -> str:
        return self.store.prefix

    def __repr__(self) -> str:  # ConsulSettings keeps the token out of its own repr
        return (
            f"BackupSettings(cluster={self.cluster_name!r}, bucket={self.bucket!r}, "
            f"prefix={self.prefix!r}, consul={self.consul!r}, keep_latest={self.keep_latest})"
        )


def load_store_settings(env: Mapping[str, str]) -> StoreSettings:
    """The cluster, its bucket and prefix, and the replica bucket when one is given."""
    cluster = _required(env, EnvVar.CLUSTER_NAME)
    try:
        check_cluster_name(cluster)
    except ClusterNameError as exc:
        raise SettingsError(f"{EnvVar.CLUSTER_NAME}: {exc}") from exc
    replica_bucket = _text(env, EnvVar.REPLICA_BUCKET)
    replica = None
    if replica_bucket:
        replica = Replica(replica_bucket, _text(env, EnvVar.REPLICA_REGION) or None)
    return StoreSettings(
        cluster_name=cluster,
        bucket=_required(env, EnvVar.BACKUP_BUCKET),
        prefix=normalize_prefix(env.get(EnvVar.BACKUP_PREFIX)),
        replica=replica,
    )


def load_settings(env: Mapping[str, str], secrets_client: SecretsClientFactory) -> BackupSettings:
    """Everything a backup run needs, from ``env``; the token is read from Secrets Manager once."""
    store = load_store_settings(env)
    keep_latest = _whole_number(env, EnvVar.KEEP_LATEST, 1, MAX_KEEP_LATEST, DEFAULT_KEEP_LATEST)
    drop = _whole_number(env, EnvVar.CONTENT_DROP_PERCENT, 1, 100, DEFAULT_CONTENT_DROP_PERCENT)
    return BackupSettings(
        store=store,
        consul=load_consul_settings(env, secrets_client),
        keep_latest=keep_latest,
        content_drop_percent=drop,
    )


def load_consul_settings(
    env: Mapping[str, str], secrets_client: SecretsClientFactory
) -> ConsulSettings:
    """How to reach Consul: address, token, datacenter, TLS, timeouts and retries."""
    try:
        address = normalize_address(_required(env, EnvVar.CONSUL_HTTP_ADDR))
    except ValueError as exc:
        raise SettingsError(f"{EnvVar.CONSUL_HTTP_ADDR}: {exc}") from exc
    read_timeout = _seconds(env, EnvVar.CONSUL_READ_TIMEOUT, DEFAULT_READ_TIMEOUT)
    retries = _whole_number(env, EnvVar.CONSUL_RETRIES, 0, MAX_RETRIES, DEFAULT_RETRIES)
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
        retry_delays=retry_delays(retries),
    )


def _whole_number(env: Mapping[str, str], name: EnvVar, low: int, high: int, default: int) -> int:
    text = _text(env, name)
    if not text:
        return default
    if not _WHOLE_NUMBER.fullmatch(text) or not low <= int(text) <= high:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def _seconds(env: Mapping[str, str], name: EnvVar, default: float) -> float:
    text = _text(env, name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1 <= value <= MAX_READ_TIMEOUT:  # NaN compares false: refused too
        raise SettingsError(
            f"{name} must be seconds from 1 to {MAX_READ_TIMEOUT:.0f}, not {text!r}"
        )
    return value


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
