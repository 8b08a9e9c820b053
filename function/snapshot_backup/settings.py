"""The function's environment contract, read and checked in one place."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .consul import DEFAULT_READ_TIMEOUT, normalize_address
from .keys import normalize_prefix

CLUSTER_NAME_PATTERN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
DEFAULT_RETRIES = 3
MAX_RETRIES = 6
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


class SettingsError(ValueError):
    """The environment does not describe a runnable backup."""


@dataclass(frozen=True)
class BackupSettings:
    consul_address: str
    cluster_name: str
    bucket: str
    prefix: str
    token_secret_arn: str | None
    datacenter: str | None
    stale: bool
    ca_cert_file: str | None
    ca_cert_pem: str | None
    read_timeout: float
    retries: int

    def __repr__(self) -> str:
        return (
            f"BackupSettings(cluster={self.cluster_name!r}, consul={self.consul_address!r}, "
            f"bucket={self.bucket!r}, prefix={self.prefix!r})"
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is required")
    return value


def load_settings(env: Mapping[str, str]) -> BackupSettings:
    cluster = _required(env, "CLUSTER_NAME")
    if not CLUSTER_NAME_PATTERN.fullmatch(cluster):
        raise SettingsError(
            f"CLUSTER_NAME {cluster!r} must be lowercase letters, digits and hyphens"
        )
    try:
        address = normalize_address(_required(env, "CONSUL_HTTP_ADDR"))
    except ValueError as exc:
        raise SettingsError(f"CONSUL_HTTP_ADDR: {exc}") from exc
    read_timeout_text = env.get("CONSUL_READ_TIMEOUT", "").strip()
    try:
        read_timeout = float(read_timeout_text) if read_timeout_text else DEFAULT_READ_TIMEOUT
    except ValueError as exc:
        raise SettingsError(f"CONSUL_READ_TIMEOUT {read_timeout_text!r} is not seconds") from exc
    retries_text = env.get("CONSUL_RETRIES", "").strip() or str(DEFAULT_RETRIES)
    if not retries_text.isdigit() or int(retries_text) > MAX_RETRIES:
        raise SettingsError(f"CONSUL_RETRIES must be a whole number from 0 to {MAX_RETRIES}")
    return BackupSettings(
        consul_address=address,
        cluster_name=cluster,
        bucket=_required(env, "BACKUP_BUCKET"),
        prefix=normalize_prefix(env.get("BACKUP_PREFIX")),
        token_secret_arn=env.get("CONSUL_TOKEN_SECRET_ARN", "").strip() or None,
        datacenter=env.get("CONSUL_DATACENTER", "").strip() or None,
        stale=_flag(env, "CONSUL_STALE"),
        ca_cert_file=env.get("CONSUL_CACERT", "").strip() or None,
        ca_cert_pem=env.get("CONSUL_CACERT_PEM", "").strip() or None,
        read_timeout=read_timeout,
        retries=int(retries_text),
    )
