"""``consul-backup inspect`` and ``diff``: what a snapshot holds, and what changed between two.

``inspect`` prints what ``consul snapshot inspect`` prints (per record type its
count and bytes; with ``--kv-details`` KV keys grouped by prefix) and more
(nodes, service instances, checks, KV entries, ACL tokens): from the
snapshot's manifest when it has what was asked, else by reading the archive
through the verifier (so an archive that would not restore is said to be so).
A local file (``--file``: a ``consul snapshot save`` file too) is read.

``diff`` reads two snapshots through the verifier, ``state.bin`` decoded with
details: per type the change in counts, KV keys added, removed and changed (by
a digest of the value), service instances and nodes added and removed.
Values are never printed: they hold secrets.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapshot_backup.environment import EnvVar
from snapshot_backup.manifest import Manifest
from snapshot_backup.reverify import prove_stored
from snapshot_backup.state_bin import (
    DEFAULT_KV_DEPTH,
    StateDecoder,
    StateDetails,
    StateSummary,
    key_text,
)
from snapshot_backup.verify import verify_archive

from .context import Context
from .errors import LocalFileError, UsageError
from .exit_codes import ExitCode
from .options import store_options, whole_number
from .progress import human_bytes

# Names a diff prints per list, unless asked for more: the rest are counted.
DIFF_LINES = 20

# --- where a snapshot comes from -------------------------------------------------


@dataclass
class Source:
    """One snapshot to read: a stored one (``latest`` or a key) or a local file."""

    label: str
    reference: str | None = None  # latest or a key
    file: Path | None = None


@dataclass
class Read:
    """A snapshot read: what it is called, its Raft metadata, and what it holds."""

    label: str
    raft_index: int
    raft_term: int
    raft_id: str
    summary: StateSummary
    details: StateDetails | None
    source: str  # "manifest", "archive" or "file"


def source_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    store_options(command, env, cluster_required=False)
    command.add_argument("--version-id", help="read this version of a stored snapshot")
    command.add_argument(
        "--allow-unrecorded",
        action="store_true",
        help="accept a stored snapshot without a manifest (checked only against itself)",
    )
    command.add_argument("--json", action="store_true", help="one JSON object")


def _decoder(args: argparse.Namespace, details: bool = False) -> StateDecoder:
    kv_filter = getattr(args, "kv_filter", None)
    return StateDecoder(
        kv_depth=getattr(args, "kv_depth", DEFAULT_KV_DEPTH),
        kv_filter=kv_filter.encode() if kv_filter else None,
        details=details,
    )


def read_source(
    ctx: Context, args: argparse.Namespace, source: Source, details: bool = False
) -> Read:
    """Read one snapshot through the verifier: a file, or a stored one against its manifest."""
    decoder = _decoder(args, details)
    if source.file is not None:
        try:
            with source.file.open("rb") as archive:
                report = verify_archive(archive, state=decoder)
        except OSError as exc:
            raise LocalFileError("read", source.file, exc) from exc
        label, origin = str(source.file), "file"
    else:
        if not args.cluster:
            raise UsageError(f"a stored snapshot needs --cluster (or {EnvVar.CLUSTER_NAME})")
        store = ctx.store(args)
        snapshot = store.find(args.cluster, source.reference or "latest")
        proven = prove_stored(
            store,
            snapshot,
            version_id=args.version_id,
            allow_unrecorded=args.allow_unrecorded,
            state=decoder,
        )
        report, label, origin = proven.report, snapshot.key, "archive"
    assert report.state is not None  # decoded, or the verifier refused the archive
    meta = report.meta
    return Read(label, meta.index, meta.term, meta.id, report.state, decoder.details, origin)


def _from_manifest(manifest: Manifest, label: str) -> Read | None:
    if manifest.state is None:
        return None
    summary = StateSummary.from_dict(manifest.state)
    return Read(
        label, manifest.raft_index, manifest.raft_term, manifest.raft_id, summary, None, "manifest"
    )


# --- inspect ----------------------------------------------------------------------


def inspect_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    source_arguments(command, env)
    command.add_argument("snapshot", nargs="?", metavar="latest|KEY", help="a stored snapshot")
    command.add_argument("--file", type=Path, help="a local archive instead")
    command.add_argument("--kv-details", action="store_true", help="KV keys grouped by prefix")
    command.add_argument(
        "--kv-depth",
        type=whole_number(0, 64),
        default=DEFAULT_KV_DEPTH,
        help="how many /-separated segments group keys (default %(default)s)",
    )
    command.add_argument("--kv-filter", help="group only keys that start with this")


def inspect(ctx: Context, args: argparse.Namespace) -> int:
    if (args.file is None) == (args.snapshot is None):
        raise UsageError("inspect needs a snapshot (latest or a key) or --file PATH, one of them")
    read = _inspected(ctx, args)
    if args.json:
        ctx.say(json.dumps(_inspect_record(read, args.kv_details)))
        return ExitCode.OK
    ctx.say(_inspect_table(read, args.kv_details))
    return ExitCode.OK


def _inspected(ctx: Context, args: argparse.Namespace) -> Read:
    """From the manifest when it answers what was asked (depth 2, no filter); else the archive."""
    if args.file is not None:
        return read_source(ctx, args, Source("file", file=args.file))
    manifest_will_do = args.kv_depth == DEFAULT_KV_DEPTH and not args.kv_filter
    if manifest_will_do and args.cluster and args.version_id is None:
        store = ctx.store(args)
        snapshot = store.find(args.cluster, args.snapshot)
        manifest = store.read_manifest(snapshot) if snapshot.has_manifest else None
        read = _from_manifest(manifest, snapshot.key) if manifest is not None else None
        if read is not None and not (args.kv_details and read.summary.kv_prefixes_truncated):
            return read
    return read_source(ctx, args, Source("snapshot", reference=args.snapshot))


def _inspect_record(read: Read, kv_details: bool) -> dict[str, Any]:
    summary = read.summary.to_dict()
    record: dict[str, Any] = {
        "snapshot": read.label,
        "source": read.source,
        "raft_index": read.raft_index,
        "raft_term": read.raft_term,
        "raft_id": read.raft_id,
        "records": summary.pop("records"),
    }
    prefixes = summary.pop("kv_prefixes")
    if kv_details:
        record["kv_prefixes"] = prefixes
        record["kv_prefixes_other"] = summary["kv_prefixes_other"]
    record["summary"] = {k: v for k, v in summary.items() if not k.startswith("kv_prefixes")}
    return record


def _inspect_table(read: Read, kv_details: bool) -> str:
    state = read.summary
    lines = [
        f" Snapshot    {read.label} (from its {read.source})",
        f" ID          {read.raft_id}",
        f" Index       {read.raft_index}",
        f" Term        {read.raft_term}",
        f" State       {human_bytes(state.state_bytes)} (last index {state.last_index})",
        "",
        f" {'Type':<28} {'Count':>10} {'Size':>12}",
        f" {'----':<28} {'-----':>10} {'----':>12}",
    ]
    ordered = sorted(state.records.items(), key=lambda item: -item[1].bytes)
    lines += [f" {name:<28} {u.count:>10} {human_bytes(u.bytes):>12}" for name, u in ordered]
    total = sum(u.bytes for u in state.records.values())
    lines += [
        f" {'----':<28} {'':>10} {'----':>12}",
        f" {'Total':<28} {'':>10} {human_bytes(total):>12}",
    ]
    lines += [
        "",
        f" {state.nodes} nodes, {state.service_instances} service instances, {state.checks} checks",
        f" {state.kv_entries} KV entries ({human_bytes(state.kv_bytes)} of values), "
        f"{state.tombstones} tombstones, {state.sessions} sessions",
        f" {state.acl_tokens} ACL tokens, {state.acl_policies} ACL policies, "
        f"{state.acl_roles} ACL roles",
    ]
    lines += [f" note: {note}" for note in state.compatibility_notes]
    if kv_details:
        lines += [
            "",
            f" {'Key Name':<40} {'Count':>10} {'Size':>12}",
            f" {'----':<40} {'-----':>10} {'----':>12}",
        ]
        ordered = sorted(state.kv_prefixes.items(), key=lambda item: -item[1].bytes)
        lines += [f" {name:<40} {u.count:>10} {human_bytes(u.bytes):>12}" for name, u in ordered]
        if state.kv_prefixes_truncated:
            other = state.kv_prefixes_other
            lines.append(
                f" {'(other prefixes)':<40} {other.count:>10} {human_bytes(other.bytes):>12}"
            )
    return "\n".join(lines)


# --- diff -----------------------------------------------------------------------------


def diff_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    source_arguments(command, env)
    command.add_argument(
        "snapshots",
        nargs="*",
        metavar="latest|KEY",
        help="the older snapshot, then the newer (stored ones)",
    )
    command.add_argument("--older-file", type=Path, help="a local archive as the older one")
    command.add_argument("--newer-file", type=Path, help="a local archive as the newer one")
    command.add_argument(
        "--limit",
        type=whole_number(0, 1_000_000_000),
        default=DIFF_LINES,
        help="names shown per list (added, removed, changed), the rest counted; "
        "0 shows all (--json always lists all; default %(default)s)",
    )


def diff(ctx: Context, args: argparse.Namespace) -> int:
    stored = [Source("stored", reference=r) for r in args.snapshots]
    older = Source("file", file=args.older_file) if args.older_file else None
    newer = Source("file", file=args.newer_file) if args.newer_file else None
    if older is None and stored:
        older = stored.pop(0)
    if newer is None and stored:
        newer = stored.pop(0)
    if older is None or newer is None or stored:
        raise UsageError(
            "diff compares two snapshots, older then newer: two of latest or a key, or "
            "--older-file / --newer-file PATH in the place of either"
        )
    before, after = (read_source(ctx, args, s, details=True) for s in (older, newer))
    report = _difference(before, after)
    if args.json:
        ctx.say(json.dumps(report))
    else:
        ctx.say(_diff_text(report, args.limit))
    return ExitCode.OK


def _difference(older: Read, newer: Read) -> dict[str, Any]:
    assert older.details is not None and newer.details is not None
    a, b = older.details, newer.details
    types = sorted(set(older.summary.records) | set(newer.summary.records))
    counts = {
        name: {
            "a": older.summary.records[name].count if name in older.summary.records else 0,
            "b": newer.summary.records[name].count if name in newer.summary.records else 0,
        }
        for name in types
    }
    changed = [k for k in a.kv.keys() & b.kv.keys() if a.kv[k][0] != b.kv[k][0]]

    def keys(found: Any, sizes: Mapping[bytes, tuple[bytes, int]]) -> list[dict[str, Any]]:
        return [{"key": key_text(k), "bytes": sizes[k][1]} for k in sorted(found)]

    def pairs(found: Any) -> list[str]:
        return sorted(f"{key_text(node)}/{key_text(service)}" for node, service in found)

    return {
        "a": {"snapshot": older.label, "raft_index": older.raft_index},
        "b": {"snapshot": newer.label, "raft_index": newer.raft_index},
        "records": {name: {**c, "change": c["b"] - c["a"]} for name, c in counts.items()},
        "kv": {
            "added": keys(b.kv.keys() - a.kv.keys(), b.kv),
            "removed": keys(a.kv.keys() - b.kv.keys(), a.kv),
            "changed": [
                {"key": key_text(k), "bytes_a": a.kv[k][1], "bytes_b": b.kv[k][1]}
                for k in sorted(changed)
            ],
        },
        "services": {
            "added": pairs(b.services - a.services),
            "removed": pairs(a.services - b.services),
        },
        "nodes": {
            "added": sorted(key_text(n) for n in b.nodes - a.nodes),
            "removed": sorted(key_text(n) for n in a.nodes - b.nodes),
        },
    }


def _shown(lines: list[str], limit: int) -> list[str]:
    if not limit or len(lines) <= limit:
        return lines
    return [*lines[:limit], f"  ... and {len(lines) - limit} more (--limit 0, or --json)"]


def _diff_text(report: dict[str, Any], limit: int) -> str:
    a, b = report["a"], report["b"]
    lines = [
        f"A {a['snapshot']} (raft index {a['raft_index']})",
        f"B {b['snapshot']} (raft index {b['raft_index']})",
        "",
        f" {'Type':<28} {'A':>10} {'B':>10} {'Change':>10}",
    ]
    for name, c in report["records"].items():
        if c["a"] or c["b"]:
            lines.append(f" {name:<28} {c['a']:>10} {c['b']:>10} {c['change']:>+10}")
    kv = report["kv"]
    lines.append(
        f"\nKV: {len(kv['added'])} added, {len(kv['removed'])} removed, {len(kv['changed'])} "
        "changed (values never shown)"
    )
    lines += _shown([f"  + {e['key']} ({human_bytes(e['bytes'])})" for e in kv["added"]], limit)
    lines += _shown([f"  - {e['key']} ({human_bytes(e['bytes'])})" for e in kv["removed"]], limit)
    changed = [
        f"  ~ {e['key']} ({human_bytes(e['bytes_a'])} -> {human_bytes(e['bytes_b'])})"
        for e in kv["changed"]
    ]
    lines += _shown(changed, limit)
    for what in ("services", "nodes"):
        found = report[what]
        lines.append(
            f"{what.capitalize()}: {len(found['added'])} added, {len(found['removed'])} removed"
        )
        lines += _shown([f"  + {name}" for name in found["added"]], limit)
        lines += _shown([f"  - {name}" for name in found["removed"]], limit)
    return "\n".join(lines)
