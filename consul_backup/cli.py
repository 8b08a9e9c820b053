"""consul-backup: list, verify, download and restore Consul snapshots; run a backup.

Reads the same environment as the backup function (``snapshot_backup.environment``),
through the same loader; flags override it. The token is never a flag, so that
it stays out of shell history and process lists. Exit codes: ``exit_codes``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import boto3
import botocore.exceptions

from snapshot_backup.backup import handler as backup_handler
from snapshot_backup.consul import ConsulClient, ConsulError
from snapshot_backup.environment import EnvVar
from snapshot_backup.keys import DEFAULT_PREFIX
from snapshot_backup.reverify import verify_stored
from snapshot_backup.settings import SettingsError, load_consul_settings
from snapshot_backup.store import SnapshotNotFoundError, SnapshotStore
from snapshot_backup.token_source import TokenError
from snapshot_backup.verify import ArchiveError, ArchiveReport, TeeReader

from .exit_codes import ExitCode, exit_code_summary
from .progress import Progress, human_bytes
from .status import ClusterTarget, cluster_status, targets_from_outputs


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
        epilog=f"Exit codes: {exit_code_summary()}.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def store_options(command: argparse.ArgumentParser, cluster_required: bool) -> None:
        _env_option(command, env, "--bucket", EnvVar.BACKUP_BUCKET, "snapshot bucket")
        _env_option(command, env, "--prefix", EnvVar.BACKUP_PREFIX, "key prefix", DEFAULT_PREFIX)
        command.add_argument(
            "--region",
            help="the bucket's region (default: asked of S3, so a replica elsewhere just works)",
        )
        _env_option(
            command,
            env,
            "--cluster",
            EnvVar.CLUSTER_NAME,
            "cluster name",
            required=cluster_required,
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

    thaw = commands.add_parser(
        "thaw", help="restore an archived snapshot (GLACIER, DEEP_ARCHIVE) so that it reads again"
    )
    store_options(thaw, cluster_required=True)
    snapshot_argument(thaw)
    thaw.add_argument(
        "--tier",
        choices=("Expedited", "Standard", "Bulk"),
        default="Standard",
        help="how fast (and dear): minutes, hours (3-5; 12 for DEEP_ARCHIVE), or up to 48 hours",
    )
    thaw.add_argument("--days", type=int, default=3, help="days the thawed copy stays readable")
    thaw.add_argument("--wait", action="store_true", help="show progress until it reads")
    thaw.add_argument("--poll-seconds", type=float, default=60.0, help=argparse.SUPPRESS)

    status = commands.add_parser(
        "status",
        help="every cluster's newest snapshot (bucket and replica) and alarms; "
        "exit 7 when one is behind or an alarm fires",
    )
    status.add_argument(
        "--outputs",
        type=Path,
        help="stack outputs: `pulumi stack output clusters --json > clusters.json` ('-': stdin)",
    )
    _env_option(
        status, env, "--bucket", EnvVar.BACKUP_BUCKET, "snapshot bucket (without --outputs)"
    )
    _env_option(status, env, "--prefix", EnvVar.BACKUP_PREFIX, "key prefix", DEFAULT_PREFIX)
    _env_option(status, env, "--cluster", EnvVar.CLUSTER_NAME, "only this cluster")
    status.add_argument(
        "--window-minutes",
        type=int,
        default=120,
        help="age that counts as behind (without --outputs)",
    )
    status.add_argument("--json", action="store_true", help="one JSON object per cluster")

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
    _env_option(command, env, "--consul-addr", EnvVar.CONSUL_HTTP_ADDR, "Consul HTTP API")
    _env_option(
        command,
        env,
        "--token-secret-arn",
        EnvVar.CONSUL_TOKEN_SECRET_ARN,
        "Secrets Manager secret holding the token; otherwise env CONSUL_HTTP_TOKEN",
    )
    _env_option(
        command, env, "--ca-cert", EnvVar.CONSUL_CACERT, "CA bundle for a privately signed Consul"
    )
    _env_option(command, env, "--datacenter", EnvVar.CONSUL_DATACENTER, "Consul datacenter")


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
        region = args.region or self.bucket_region(args.bucket)
        return SnapshotStore(boto3.client("s3", region_name=region), args.bucket, args.prefix)

    def bucket_region(self, bucket: str) -> str | None:
        """Where ``bucket`` lives, so that a replica in another region reads as the primary does.

        HeadBucket answers with the bucket's region from any region's endpoint;
        in an outage of the configured region, pass ``--region`` instead.
        """
        try:
            head = boto3.client("s3").head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as exc:
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = headers.get("x-amz-bucket-region")
            if region is None:
                raise
        else:
            region = head.get("BucketRegion") or head["ResponseMetadata"]["HTTPHeaders"].get(
                "x-amz-bucket-region"
            )
        configured = boto3.session.Session().region_name
        if region and region != configured:
            print(f"consul-backup: s3://{bucket} is in {region}", file=self.err)
        return str(region) if region else None

    def consul(self, args: argparse.Namespace) -> ConsulClient:
        env = self.consul_env(args)
        if not env.get(EnvVar.CONSUL_HTTP_ADDR):
            raise UsageError("no Consul address: pass --consul-addr or set CONSUL_HTTP_ADDR")
        return ConsulClient(load_consul_settings(env, lambda: boto3.client("secretsmanager")))

    def consul_env(self, args: argparse.Namespace) -> dict[str, str]:
        """The environment with the Consul flags laid over it, for the function's own loader."""
        env = dict(self.env)
        for variable, value in (
            (EnvVar.CONSUL_HTTP_ADDR, args.consul_addr),
            (EnvVar.CONSUL_TOKEN_SECRET_ARN, args.token_secret_arn),
            (EnvVar.CONSUL_CACERT, args.ca_cert),
            (EnvVar.CONSUL_DATACENTER, args.datacenter),
        ):
            if value:
                env[variable] = value
        return env

    # --- commands ----------------------------------------------------------

    def list(self, args: argparse.Namespace) -> int:
        store = self.store(args)
        snapshots = store.list(args.cluster)
        states = {s.key: store.state_of(s).describe() for s in snapshots}
        if args.json:
            for s in snapshots:
                record = {
                    "key": s.key,
                    "cluster": s.cluster,
                    "taken_at": s.taken_at.isoformat(),
                    "raft_index": s.raft_index,
                    "bytes": s.size,
                    "storage_class": s.storage_class,
                    "state": states[s.key],
                }
                self.say(json.dumps(record))
            return ExitCode.OK
        if not snapshots:
            self.say("no snapshots")
            return ExitCode.OK
        self.say(
            f"{'TAKEN (UTC)':<20} {'CLUSTER':<16} {'RAFT INDEX':>12} {'SIZE':>11}  "
            f"{'CLASS':<12} {'STATE':<10} KEY"
        )
        for s in snapshots:
            self.say(
                f"{s.taken_at:%Y-%m-%d %H:%M:%S} {s.cluster:<16} {s.raft_index:>12} "
                f"{human_bytes(s.size):>11}  {s.storage_class:<12} {states[s.key]:<10} {s.key}"
            )
        return ExitCode.OK

    def _readable(self, store: SnapshotStore, key: str, args: argparse.Namespace) -> None:
        """Stop at once, saying what to do, when S3 would not serve the object now."""
        state = store.archive_state(key)
        if state.readable:
            return
        doing = (
            "a thaw is under way; wait for it"
            if state.restoring
            else f"thaw it first: consul-backup thaw --bucket {store.bucket} "
            f"--cluster {args.cluster} {key} --wait"
        )
        raise SnapshotArchivedError(
            f"s3://{store.bucket}/{key} is in {state.storage_class}: S3 serves it only after a "
            f"restore from the archive (minutes to hours by tier); {doing}"
        )

    def thaw(self, args: argparse.Namespace) -> int:
        store = self.store(args)
        key = store.resolve(args.cluster, args.snapshot)
        state = store.archive_state(key)
        if not state.archived:
            self.say(f"{key} is in {state.storage_class}: it reads at once, nothing to thaw")
            return ExitCode.OK
        if not state.restoring and state.restored_until is None:
            store.s3.restore_object(
                Bucket=store.bucket,
                Key=key,
                RestoreRequest={"Days": args.days, "GlacierJobParameters": {"Tier": args.tier}},
            )
            self.say(
                f"Thawing {key} from {state.storage_class} ({args.tier}, kept {args.days} days)"
            )
        while args.wait:
            state = store.archive_state(key)
            if state.restored_until is not None:
                break
            print(f"  {key}: {state.describe()}", file=self.err, flush=True)
            time.sleep(args.poll_seconds)
        self.say(f"{key}: {store.archive_state(key).describe()}")
        return ExitCode.OK

    def _verify_object(
        self, store: SnapshotStore, key: str, sink: Callable[[bytes], None] | None = None
    ) -> tuple[ArchiveReport, str, dict[str, Any]]:
        response = store.open(key)  # archived objects were stopped before (_readable)
        progress = Progress("verifying", response.get("ContentLength"), self.err)

        def observe(data: bytes) -> None:
            progress(data)
            if sink is not None:
                sink(data)

        try:
            report, sha256 = verify_stored(response, key, observe)
        finally:
            progress.finish()
        return report, sha256, response

    def verify(self, args: argparse.Namespace) -> int:
        store = self.store(args)
        key = store.resolve(args.cluster, args.snapshot)
        self._readable(store, key, args)
        report, sha256, response = self._verify_object(store, key)
        self.say(
            f"OK {key}\n  raft index {report.meta.index}, term {report.meta.term}, "
            f"state {human_bytes(report.state_bytes)}, archive "
            f"{human_bytes(response.get('ContentLength', 0))}, sha256 {sha256}"
        )
        return ExitCode.OK

    def download(self, args: argparse.Namespace) -> int:
        store = self.store(args)
        key = store.resolve(args.cluster, args.snapshot)
        self._readable(store, key, args)
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
        return ExitCode.OK

    def restore(self, args: argparse.Namespace) -> int:
        store = self.store(args)
        consul = self.consul(args)
        key = store.resolve(args.cluster, args.snapshot)
        self._readable(store, key, args)
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
        return ExitCode.OK

    def status(self, args: argparse.Namespace) -> int:
        if args.outputs is not None:
            text = sys.stdin.read() if str(args.outputs) == "-" else args.outputs.read_text()
            targets = targets_from_outputs(json.loads(text))
        elif args.bucket and args.cluster:
            targets = [ClusterTarget(args.cluster, args.bucket, args.prefix, args.window_minutes)]
        else:
            raise UsageError("status needs --outputs, or --bucket and --cluster")
        if args.cluster:
            targets = [t for t in targets if t.cluster == args.cluster]
            if not targets:
                raise UsageError(f"no cluster {args.cluster!r} in the stack outputs")

        def s3_for(region: str | None) -> Any:
            return boto3.client("s3", region_name=region) if region else boto3.client("s3")

        cloudwatch = boto3.client("cloudwatch")
        statuses = [cluster_status(t, s3_for, cloudwatch) for t in targets]
        for status in statuses:
            if args.json:
                self.say(json.dumps(status.as_dict(), default=str))
                continue
            verdict = "OK" if status.healthy else "BEHIND OR ALARMING"
            self.say(f"{status.cluster}: {verdict} (window {status.window_minutes} min)")
            for name, place in status.places.items():
                if place.key is None:
                    self.say(f"  {name:<8} s3://{place.bucket}: no snapshot")
                    continue
                behind = " (BEHIND)" if place.behind else ""
                self.say(
                    f"  {name:<8} {place.age_minutes:.0f} min old{behind}, "
                    f"raft index {place.raft_index}, {human_bytes(place.bytes or 0)}, "
                    f"{place.storage_class}{', ' + place.lock if place.lock else ''}  {place.key}"
                )
            for alarm, state in sorted(status.alarms.items()):
                self.say(f"  alarm    {state:<17} {alarm}")
        return ExitCode.OK if all(s.healthy for s in statuses) else ExitCode.UNHEALTHY

    def backup(self, args: argparse.Namespace) -> int:
        if args.local:
            env = self.consul_env(args)
            env.update(
                {
                    EnvVar.CLUSTER_NAME: args.cluster,
                    EnvVar.BACKUP_BUCKET: args.bucket or "",
                    EnvVar.BACKUP_PREFIX: args.prefix,
                }
            )
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
        return ExitCode.OK


class RemoteFailureError(Exception):
    pass


class SnapshotArchivedError(Exception):
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
        return ExitCode.DEFECTIVE
    except (UsageError, SettingsError) as exc:
        print(f"consul-backup: {exc}", file=err)
        return ExitCode.USAGE
    except SnapshotNotFoundError as exc:
        print(f"consul-backup: {exc}", file=err)
        return ExitCode.NOT_FOUND
    except NotConfirmedError as exc:
        print(f"consul-backup: {exc}", file=err)
        return ExitCode.NOT_CONFIRMED
    except SnapshotArchivedError as exc:
        print(f"consul-backup: {exc}", file=err)
        return ExitCode.ARCHIVED
    except (ConsulError, TokenError, RemoteFailureError) as exc:
        print(f"consul-backup: {exc}", file=err)
        return ExitCode.REMOTE
    except botocore.exceptions.BotoCoreError as exc:
        print(f"consul-backup: AWS: {exc}", file=err)
        return ExitCode.REMOTE
    except botocore.exceptions.ClientError as exc:
        print(f"consul-backup: AWS refused: {exc}", file=err)
        return ExitCode.REMOTE
    except KeyboardInterrupt:
        print("consul-backup: interrupted", file=err)
        return ExitCode.INTERRUPTED


def _ask_on_terminal(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise NotConfirmedError("restore needs confirmation: pass --yes when not on a terminal")
    return input(prompt)


def main() -> None:
    sys.exit(run())
