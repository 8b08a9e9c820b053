"""`make sandbox`: a bucket with a snapshot and a Consul to restore into, to try the CLI by hand.

Starts moto (S3, Secrets Manager, CloudWatch) and a Consul double on
127.0.0.1, on free ports; creates a versioned bucket and a secret holding the
double's management token; runs one backup through the real Lambda handler;
then prints the environment to paste into another shell and a few commands to
try, and keeps running. Ctrl-C (or ``kill <pid>``, printed too) stops
everything it started: the Consul double runs in this process, and moto's
child process is stopped by its context manager (and dies with this process
anyway: ``moto_server`` asks Linux for that).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import signal
import sys
import threading
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3

from snapshot_backup.backup import handler
from snapshot_backup.environment import EnvVar
from snapshot_backup.keys import DEFAULT_PREFIX
from snapshot_backup.retention import DEFAULT_KEEP_LATEST
from testbed.consul_double import ConsulDouble
from testbed.moto_server import aws_env, moto_server

BUCKET = "consul-backup-sandbox"
VENV_BIN = Path(sys.executable).parent
# What the test reads to know the sandbox is ready: the environment precedes it.
READY = "Sandbox ready."


def prepare(cluster: str, consul: ConsulDouble, token: str) -> dict[str, str]:
    """A versioned bucket and the token's secret; the function's environment for them."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    secret = boto3.client("secretsmanager").create_secret(
        Name=f"consul-backup/{cluster}", SecretString=token
    )
    return {
        **os.environ,
        EnvVar.CONSUL_HTTP_ADDR: consul.address,
        EnvVar.CONSUL_TOKEN_SECRET_ARN: secret["ARN"],
        EnvVar.BACKUP_BUCKET: BUCKET,
        EnvVar.BACKUP_PREFIX: DEFAULT_PREFIX,
        EnvVar.CLUSTER_NAME: cluster,
        EnvVar.KEEP_LATEST: str(DEFAULT_KEEP_LATEST),
    }


def back_up_once(function_env: dict[str, str]) -> dict[str, Any]:
    """One run of the real handler; its log line (CloudWatch EMF) kept off the screen."""
    with contextlib.redirect_stdout(io.StringIO()):
        summary: dict[str, Any] = handler({}, None, env=function_env)
    return summary


def shell_environment(endpoint: str, cluster: str, consul: ConsulDouble, token: str) -> str:
    """The ``export`` line that points the CLI (and boto3) at this sandbox."""
    variables = {
        **aws_env(endpoint),
        EnvVar.BACKUP_BUCKET: BUCKET,
        EnvVar.CLUSTER_NAME: cluster,
        EnvVar.CONSUL_HTTP_ADDR: consul.address,
        EnvVar.CONSUL_HTTP_TOKEN: token,
        EnvVar.KEEP_LATEST: str(DEFAULT_KEEP_LATEST),
    }
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items())


def instructions(exports: str, summary: dict[str, Any]) -> str:
    return f"""
Backed up {summary["key"]} (raft index {summary["raft_index"]}, {summary["bytes"]} bytes).

Paste into another shell (fake credentials, valid only against this sandbox):

{exports}
export PATH={shlex.quote(str(VENV_BIN))}:"$PATH"

Then try:

  consul-backup list
  consul-backup verify latest
  consul-backup download latest -o /tmp/sandbox.snap
  consul-backup backup --local                 # one more, through the real handler
  consul-backup status --window-minutes 60
  consul-backup restore latest --yes           # into the Consul double
  consul-backup verify latest --bucket nope    # what a mistake looks like

{READY} Stop it with Ctrl-C here, or: kill {os.getpid()}
"""


def serve(cluster: str, stop: threading.Event) -> None:
    with ExitStack() as stack:
        endpoint = stack.enter_context(moto_server())
        os.environ.update(aws_env(endpoint))
        token = str(uuid.uuid4())
        consul = stack.enter_context(ConsulDouble(tokens={token: True}))  # its own small state
        summary = back_up_once(prepare(cluster, consul, token))
        exports = shell_environment(endpoint, cluster, consul, token)
        print(f"moto at {endpoint}, a Consul double at {consul.address}")
        print(instructions(exports, summary), flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print("Stopping moto and the Consul double", flush=True)
    print("Sandbox stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cluster", default="sandbox", help="the cluster's name in keys")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.set())
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):  # the fake keys, never a profile
        os.environ.pop(name, None)
    serve(args.cluster, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
