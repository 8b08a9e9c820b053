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
