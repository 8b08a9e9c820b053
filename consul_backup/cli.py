"""consul-backup: list, verify, download and restore Consul snapshots; run a backup.

Reads the same environment as the backup function (BACKUP_BUCKET, BACKUP_PREFIX,
CLUSTER_NAME, CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_TOKEN_SECRET_ARN,
CONSUL_CACERT, CONSUL_CACERT_PEM, CONSUL_DATACENTER); flags override it. The token
is never a flag, so that it stays out of shell history and process lists.

Exit codes: 0 done; 1 the snapshot is defective; 2 usage or configuration
error; 3 snapshot not found; 4 AWS or Consul refused or could not be reached;
5 restore not confirmed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import boto3
import botocore.exceptions

from snapshot_backup.backup import handler as backup_handler
from snapshot_backup.consul import ConsulClient, ConsulError, ConsulSettings
from snapshot_backup.keys import DEFAULT_PREFIX
from snapshot_backup.settings import SettingsError
from snapshot_backup.token_source import TokenError, resolve_token
from snapshot_backup.verify import ArchiveError, ArchiveReport, TeeReader, verify_archive

from .progress import Progress, human_bytes
from .snapshots import SnapshotNotFoundError, SnapshotStore

EXIT_OK = 0
EXIT_DEFECTIVE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REMOTE = 4
EXIT_NOT_CONFIRMED = 5
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    pass


class NotConfirmedError(Exception):
    pass


def _env_default(env: Mapping[str, str], name: str, fallback: str | None = None) -> str | None:
    return env.get(name) or fallback


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consul-backup",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Exit codes: 0 done, 1 defective snapshot, 2 usage, 3 not found, "
        "4 AWS/Consul error, 5 restore not confirmed.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def store_options(command: argparse.ArgumentParser, cluster_required: bool) -> None:
        _env_option(command, env, "--bucket", "BACKUP_BUCKET", "snapshot bucket")
        _env_option(command, env, "--prefix", "BACKUP_PREFIX", "key prefix", DEFAULT_PREFIX)
        _env_option(
            command, env, "--cluster", "CLUSTER_NAME", "cluster name", required=cluster_required
        )

    def snapshot_argument(command: argparse.ArgumentParser) -> None:
        command.add_argument("snapshot", metavar="latest|KEY", help="'latest' or an S3 key")

    listing = commands.add_parser("list", help="snapshots, newest first")
    store_options(listing, cluster_required=False)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    verify = commands.add_parser("verify", help="stream a snapshot from S3 through the verifier")
    store_options(verify, cluster_required=True)
    snapshot_argument(verify)

    download = commands.add_parser("download", help="download a snapshot, verified")
    store_options(download, cluster_required=True)
    snapshot_argument(download)
    download.add_argument("-o", "--output", required=True, type=Path, help="file to write")
    download.add_argument("--force", action="store_true", help="replace an existing file")

    restore = commands.add_parser(
        "restore", help="verify a snapshot, then restore it into Consul (PUT /v1/snapshot)"
    )
    store_options(restore, cluster_required=True)
    snapshot_argument(restore)
    consul_options(restore, env)
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    backup = commands.add_parser("backup", help="take a backup now")
    store_options(backup, cluster_required=True)
    _env_option(
        backup,
        env,
        "--function-name",
        "BACKUP_FUNCTION_NAME",
        "deployed function to invoke (stack output functionName)",
    )
    backup.add_argument(
        "--local",
        action="store_true",
        help="run the backup handler in this process against CONSUL_HTTP_ADDR",
    )
    consul_options(backup, env)
    return parser


def _env_option(
    command: argparse.ArgumentParser,
    env: Mapping[str, str],
    flag: str,
    variable: str,
    help_text: str,
    fallback: str | None = None,
    required: bool = False,
) -> None:
    """A flag whose default comes from the environment, named in its help."""
    command.add_argument(
        flag,
        default=_env_default(env, variable, fallback),
        required=required and not env.get(variable),
        help=f"{help_text} (env {variable}" + (f", default {fallback})" if fallback else ")"),
    )


def consul_options(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    _env_option(command, env, "--consul-addr", "CONSUL_HTTP_ADDR", "Consul HTTP API")
    _env_option(
        command,
        env,
        "--token-secret-arn",
        "CONSUL_TOKEN_SECRET_ARN",
        "Secrets Manager secret holding the token; otherwise env CONSUL_HTTP_TOKEN",
    )
    _env_option(
        command, env, "--ca-cert", "CONSUL_CACERT", "CA bundle for a privately signed Consul"
    )
    _env_option(command, env, "--datacenter", "CONSUL_DATACENTER", "Consul datacenter")


class Cli:
    def __init__(self, env: Mapping[str, str], out: TextIO, err: TextIO, ask: Callable[[str], str]):
        self.env = env
        self.out = out
        self.err = err
        self.ask = ask

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def store(self, args: argparse.Namespace) -> SnapshotStore:
        if not args.bucket:
            raise UsageError("no bucket: pass --bucket or set BACKUP_BUCKET")
        return SnapshotStore(boto3.client("s3"), args.bucket, args.prefix)

    def consul(self, args: argparse.Namespace) -> ConsulClient:
        if not args.consul_addr:
            raise UsageError("no Consul address: pass --consul-addr or set CONSUL_HTTP_ADDR")
        token = resolve_token(
            self.env, args.token_secret_arn, lambda: boto3.client("secretsmanager")
        )
        try:
            return ConsulClient(
                ConsulSettings(
                    address=args.consul_addr,
                    token=token,
                    datacenter=args.datacenter,
                    ca_cert_file=args.ca_cert,
                    ca_cert_pem=self.env.get("CONSUL_CACERT_PEM") or None,
                )
            )
        except ValueError as exc:
            raise UsageError(f"--consul-addr: {exc}") from exc

    # --- commands ----------------------------------------------------------

    def list(self, args: argparse.Namespace) -> int:
        snapshots = self.store(args).list(args.cluster)
        if args.json:
            for s in snapshots:
                record = {
                    "key": s.key,
                    "cluster": s.cluster,
                    "taken_at": s.taken_at.isoformat(),
                    "raft_index": s.raft_index,
                    "bytes": s.size,
                }
                self.say(json.dumps(record))
            return EXIT_OK
        if not snapshots:
            self.say("no snapshots")
            return EXIT_OK
        self.say(f"{'TAKEN (UTC)':<20} {'CLUSTER':<16} {'RAFT INDEX':>12} {'SIZE':>11}  KEY")
        for s in snapshots:
            self.say(
                f"{s.taken_at:%Y-%m-%d %H:%M:%S} {s.cluster:<16} {s.raft_index:>12} "
                f"{human_bytes(s.size):>11}  {s.key}"
            )
        return EXIT_OK

    def _verify_object(
        self, store: SnapshotStore, key: str, sink: Callable[[bytes], None] | None = None
    ) -> tuple[ArchiveReport, str, dict[str, Any]]:
        response = store.open(key)
        progress = Progress("verifying", response.get("ContentLength"), self.err)
        digest = hashlib.sha256()

        def observe(data: bytes) -> None:
            digest.update(data)
            progress(data)
            if sink is not None:
                sink(data)

        try:
            report = verify_archive(TeeReader(response["Body"], observe))
        finally:
            progress.finish()
            response["Body"].close()
        sha256 = digest.hexdigest()
        recorded = response.get("Metadata", {}).get("sha256")
        if recorded and recorded != sha256:
            raise ArchiveError(f"archive SHA-256 {sha256} differs from the recorded {recorded}")
        return report, sha256, response

    def verify(self, args: argparse.Namespace) -> int:
        store = self.store(args)
        key = store.resolve(args.cluster, args.snapshot)
        report, sha256, response = self._verify_object(store, key)
        self.say(
            f"OK {key}\n  raft index {report.meta.index}, term {report.meta.term}, "
            f"state {human_bytes(report.state_bytes)}, archive "
            f"{human_bytes(response.get('ContentLength', 0))}, sha256 {sha256}"
        )
        return EXIT_OK

    def download(self, args: argparse.Namespace) -> int:
        store = self.store(args)
        key = store.resolve(args.cluster, args.snapshot)
        target: Path = args.output
        if target.exists() and not args.force:
            raise UsageError(f"{target} exists: pass --force to replace it")
        # Like `consul snapshot save`: an unverified file never has the real name.
        partial = target.with_name(target.name + ".unverified")
        try:
            with partial.open("wb") as out:

                def save(data: bytes) -> None:
                    out.write(data)

                report, sha256, _ = self._verify_object(store, key, save)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        self.say(
            f"Saved and verified {key} to {target} "
            f"(raft index {report.meta.index}, sha256 {sha256})"
        )
        return EXIT_OK

    def restore(self, args: argparse.Namespace) -> int:
        store = self.store(args)
        consul = self.consul(args)
        key = store.resolve(args.cluster, args.snapshot)
        report, sha256, first = self._verify_object(store, key)
        version = first.get("VersionId")
        size = int(first["ContentLength"])
        self.say(
            f"Verified {key}: raft index {report.meta.index}, term {report.meta.term}, "
            f"{human_bytes(size)}"
        )
        if not args.yes:
            prompt = (
                f"Restore it into Consul at {consul.base_url}? This replaces the cluster's "
                "whole state. Type 'restore' to go on: "
            )
            if self.ask(prompt).strip() != "restore":
                raise NotConfirmedError("restore not confirmed; nothing was sent to Consul")
        # The same version that was verified, streamed again: never held in memory.
        second = store.open(key, version_id=version if version not in (None, "null") else None)
        progress = Progress("restoring", size, self.err)
        digest = hashlib.sha256()

        def observe(data: bytes) -> None:
            digest.update(data)
            progress(data)

        try:
            consul.restore_snapshot(TeeReader(second["Body"], observe), size=size)
        finally:
            progress.finish()
            second["Body"].close()
        if digest.hexdigest() != sha256:
            raise ArchiveError("the object changed between verification and restore")
        self.say(f"Restored {key} (raft index {report.meta.index}) into {consul.base_url}")
        return EXIT_OK

    def backup(self, args: argparse.Namespace) -> int:
        if args.local:
            env = dict(self.env)
            env.update(
                {
                    "CLUSTER_NAME": args.cluster,
                    "BACKUP_BUCKET": args.bucket or "",
                    "BACKUP_PREFIX": args.prefix,
                    "CONSUL_HTTP_ADDR": args.consul_addr or "",
                }
            )
            for name, value in (
                ("CONSUL_TOKEN_SECRET_ARN", args.token_secret_arn),
                ("CONSUL_CACERT", args.ca_cert),
                ("CONSUL_DATACENTER", args.datacenter),
            ):
                if value:
                    env[name] = value
            summary = backup_handler({}, None, env=env)
        else:
            if not args.function_name:
                raise UsageError(
                    "no function: pass --function-name (stack output functionName) or --local"
                )
            response = boto3.client("lambda").invoke(FunctionName=args.function_name, Payload=b"{}")
            payload = json.loads(response["Payload"].read() or b"null")
            if response.get("FunctionError"):
                message = payload.get("errorMessage") if isinstance(payload, dict) else payload
                raise RemoteFailureError(f"the backup function failed: {message}")
            summary = payload
        self.say(json.dumps(summary, indent=2, default=str))
        return EXIT_OK


class RemoteFailureError(Exception):
    pass


def run(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    ask: Callable[[str], str] | None = None,
) -> int:
    env = os.environ if env is None else env
    err = err or sys.stderr
    args = build_parser(env).parse_args(argv)
    cli = Cli(env, out or sys.stdout, err, ask or _ask_on_terminal)
    try:
        command: Callable[[argparse.Namespace], int] = getattr(cli, args.command)
        return command(args)
    except ArchiveError as exc:
        print(f"consul-backup: DEFECTIVE snapshot: {exc}", file=err)
        return EXIT_DEFECTIVE
    except (UsageError, SettingsError) as exc:
        print(f"consul-backup: {exc}", file=err)
        return EXIT_USAGE
    except SnapshotNotFoundError as exc:
        print(f"consul-backup: {exc}", file=err)
        return EXIT_NOT_FOUND
    except NotConfirmedError as exc:
        print(f"consul-backup: {exc}", file=err)
        return EXIT_NOT_CONFIRMED
    except (ConsulError, TokenError, RemoteFailureError) as exc:
        print(f"consul-backup: {exc}", file=err)
        return EXIT_REMOTE
    except botocore.exceptions.BotoCoreError as exc:
        print(f"consul-backup: AWS: {exc}", file=err)
        return EXIT_REMOTE
    except botocore.exceptions.ClientError as exc:
        print(f"consul-backup: AWS refused: {exc}", file=err)
        return EXIT_REMOTE
    except KeyboardInterrupt:
        print("consul-backup: interrupted", file=err)
        return EXIT_INTERRUPTED


def _ask_on_terminal(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise NotConfirmedError("restore needs confirmation: pass --yes when not on a terminal")
    return input(prompt)


def main() -> None:
    sys.exit(run())
