"""Arguments that several commands share, and the checks argparse applies to values.

A flag backed by the function's environment contract names its variable in
its help (``EnvVar``, never a copy of the name); values are checked as they
are parsed, so that a bad one is a usage error naming the flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from snapshot_backup.environment import EnvVar
from snapshot_backup.keys import DEFAULT_PREFIX, ClusterNameError, check_cluster_name


def cluster_name(text: str) -> str:
    """argparse type: a cluster name as the component, the function and the keys accept it."""
    try:
        return check_cluster_name(text)
    except ClusterNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def whole_number(low: int, high: int, unit: str = "") -> Callable[[str], int]:
    """argparse type: a whole number from ``low`` to ``high``, the bounds said when refused."""
    what = f" of {unit}" if unit else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number{what} from {low} to {high}"
            )
        return value

    return parse


def env_option(
    command: argparse.ArgumentParser,
    env: Mapping[str, str],
    flag: str,
    variable: EnvVar,
    help_text: str,
    fallback: str | None = None,
    required: bool = False,
    **extra: Any,
) -> None:
    """A flag whose default comes from the environment, named in its help."""
    command.add_argument(
        flag,
        default=env.get(variable) or fallback,
        required=required and not env.get(variable),
        help=f"{help_text} (env {variable}" + (f", default {fallback})" if fallback else ")"),
        **extra,
    )


def region_option(command: argparse.ArgumentParser, help_text: str | None = None) -> None:
    command.add_argument(
        "--region",
        help=help_text
        or "the bucket's region (default: asked of S3, so that a replica elsewhere just works)",
    )


def cluster_option(
    command: argparse.ArgumentParser, env: Mapping[str, str], help_text: str, required: bool
) -> None:
    env_option(
        command, env, "--cluster", EnvVar.CLUSTER_NAME, help_text, required=required,
        type=cluster_name,
    )  # fmt: skip


def store_options(
    command: argparse.ArgumentParser,
    env: Mapping[str, str],
    cluster_required: bool,
    prefix_fallback: str | None = DEFAULT_PREFIX,
) -> None:
    """Where the snapshots are: bucket, prefix, region, cluster."""
    env_option(command, env, "--bucket", EnvVar.BACKUP_BUCKET, "snapshot bucket")
    env_option(command, env, "--prefix", EnvVar.BACKUP_PREFIX, "key prefix", prefix_fallback)
    region_option(command)
    cluster_option(command, env, "cluster name", required=cluster_required)


def snapshot_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument("snapshot", metavar="latest|KEY", help="'latest' or an S3 key")


def consul_options(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """How to reach Consul; the token is never a flag (shell history, process lists)."""
    env_option(command, env, "--consul-addr", EnvVar.CONSUL_HTTP_ADDR, "Consul HTTP API")
    env_option(
        command,
        env,
        "--token-secret-arn",
        EnvVar.CONSUL_TOKEN_SECRET_ARN,
        f"Secrets Manager secret holding the token; otherwise env {EnvVar.CONSUL_HTTP_TOKEN}",
    )
    env_option(
        command, env, "--ca-cert", EnvVar.CONSUL_CACERT, "CA bundle for a privately signed Consul"
    )
    env_option(command, env, "--datacenter", EnvVar.CONSUL_DATACENTER, "Consul datacenter")
