"""The function's environment contract: every variable it reads, named once.

The component sets these for the deployed function, ``settings`` reads them,
and the CLI reads the same ones (its flags override them). Nothing secret is
ever set here by the component: the token travels as a Secrets Manager ARN.
"""

from __future__ import annotations

from enum import StrEnum


class EnvVar(StrEnum):
    """The name of each environment variable, and what it carries."""

    CONSUL_HTTP_ADDR = "CONSUL_HTTP_ADDR"
    CONSUL_TOKEN_SECRET_ARN = "CONSUL_TOKEN_SECRET_ARN"  # noqa: S105 - a name, not a secret
    CONSUL_HTTP_TOKEN = "CONSUL_HTTP_TOKEN"  # noqa: S105 - a name, not a secret
    CONSUL_DATACENTER = "CONSUL_DATACENTER"
    CONSUL_STALE = "CONSUL_STALE"
    CONSUL_CACERT = "CONSUL_CACERT"
    CONSUL_CACERT_PEM = "CONSUL_CACERT_PEM"
    CONSUL_READ_TIMEOUT = "CONSUL_READ_TIMEOUT"
    CONSUL_RETRIES = "CONSUL_RETRIES"
    BACKUP_BUCKET = "BACKUP_BUCKET"
    BACKUP_PREFIX = "BACKUP_PREFIX"
    CLUSTER_NAME = "CLUSTER_NAME"
    KEEP_LATEST = "KEEP_LATEST"
    CONTENT_DROP_PERCENT = "CONTENT_DROP_PERCENT"
    REPLICA_BUCKET = "REPLICA_BUCKET"
    REPLICA_REGION = "REPLICA_REGION"
    BACKUP_FUNCTION_NAME = "BACKUP_FUNCTION_NAME"


# One line each, for the README's table of the contract.
ENV_DOCS = {
    EnvVar.CONSUL_HTTP_ADDR: "required; `https://host:8501`; a bare `host:port` means http",
    EnvVar.CONSUL_TOKEN_SECRET_ARN: "Secrets Manager secret whose SecretString is the ACL token",
    EnvVar.CONSUL_HTTP_TOKEN: "plain token, for local runs only (the component never sets it)",
    EnvVar.CONSUL_DATACENTER: "optional, sent as `dc`",
    EnvVar.CONSUL_STALE: "`true`: stale read from any server (works while there is no leader)",
    EnvVar.CONSUL_CACERT: "CA bundle file for a privately signed Consul",
    EnvVar.CONSUL_CACERT_PEM: "CA bundle as inline PEM",
    EnvVar.CONSUL_READ_TIMEOUT: "seconds to wait between bytes, default 300 (Consul writes the "
    "whole snapshot before the first byte)",
    EnvVar.CONSUL_RETRIES: "retries before the first byte, 0 to 6, default 3",
    EnvVar.BACKUP_BUCKET: "required; target bucket",
    EnvVar.BACKUP_PREFIX: "key prefix, default `consul-snapshots/`",
    EnvVar.CLUSTER_NAME: "required; names the cluster in keys, metadata, logs and metrics",
    EnvVar.KEEP_LATEST: "the newest N snapshots never expire (1 to 1000, default 7); older "
    "ones are tagged for lifecycle to expire",
    EnvVar.CONTENT_DROP_PERCENT: "a snapshot whose KV entries, service instances, nodes or ACL "
    "tokens fell by more than this percentage (from at least 20) is flagged, and the one before "
    "it held (1 to 100, default 50)",
    EnvVar.REPLICA_BUCKET: "re-verification only: the replica bucket, verified as well",
    EnvVar.REPLICA_REGION: "re-verification only: the replica bucket's region",
    EnvVar.BACKUP_FUNCTION_NAME: "CLI only: the deployed backup function `consul-backup backup` "
    "invokes",
}
