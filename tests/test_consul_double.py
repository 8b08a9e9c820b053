"""The Consul double answers and restores as Consul does, over real HTTP.

``GET /v1/agent/self`` with Consul's ACL rules; ``PUT /v1/snapshot`` streamed through
Consul's checks (gzip, tar, SHA256SUMS, Raft's size and version, the FSM's decoding):
a body that passes them all replaces the state, any other leaves it as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import signal
import socket
import subprocess
import sys
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
import requests

from testbed.archive_writer import ArchiveDefects, RaftState, archive_bytes, write_archive
from testbed.consul_double import (
    ANONYMOUS_DENIED,
    RESTORED_IN_MEMORY_LIMIT,
    RESTORED_TYPES,
    ConsulDouble,
)
from testbed.fsm_writer import MESSAGE_TYPE_NAMES, ConsulState
from testbed.moto_server import free_port, wait_until_serving
from tests.archives import Snapshot, meta_for

REPO = Path(__file__).resolve().parent.parent
MANAGEMENT = {"X-Consul-Token": "root-token", "Accept-Encoding": "identity"}
AGENT_READ_DENIED = "lacks permission 'agent:read' on \"consul-server-1\""


def take_snapshot(double: ConsulDouble) -> bytes:
    response = requests.get(f"{double.address}/v1/snapshot", headers=MANAGEMENT, timeout=60)
    assert response.status_code == 200, response.text
    return response.content


def members_of(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive)), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def bytes_of(state: RaftState) -> bytes:
    return b"".join(state.chunks())


def put(double: ConsulDouble, body: bytes) -> requests.Response:
    return requests.put(f"{double.address}/v1/snapshot", data=body, headers=MANAGEMENT, timeout=60)


def put_and_hang_up(double: ConsulDouble, framing: dict[str, str], sent: bytes) -> bytes:
    """A PUT whose client sends ``sent`` and closes its side: the answer, if any."""
    head = ["PUT /v1/snapshot HTTP/1.1", "Host: 127.0.0.1", "X-Consul-Token: root-token"]
    head += [f"{name}: {value}" for name, value in framing.items()]
    port = int(double.address.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + sent)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(1 << 16):  # the double answers, then closes
            answer += chunk
    return answer


def state_bin(*records: tuple[int, object], last_index: int = 20) -> bytes:
    """A state.bin made by msgpack (newer forms than Consul's writer: str 8, bin)."""
    data = msgpack.packb({"LastIndex": last_index})
    for msg_type, record in records:
        data += bytes((msg_type,)) + msgpack.packb(record)
    return data


DIR_ENTRY = {"Key": "config/app", "Value": b"v", "Flags": 0, "LockIndex": 0, "Session": ""}
DIR_ENTRY |= {"CreateIndex": 7, "ModifyIndex": 7}
GOOD_STATE = state_bin((2, DIR_ENTRY))


# --- GET /v1/agent/self -----------------------------------------------------------


def test_agent_self_answers_with_the_agents_datacenter_name_and_version():
    with ConsulDouble(datacenters=("eu-west-1", "us-east-1"), node_name="server-7") as double:
        response = requests.get(f"{double.address}/v1/agent/self", headers=MANAGEMENT, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["Config"]["Datacenter"] == "eu-west-1"
    assert body["Config"]["NodeName"] == body["Member"]["Name"] == "server-7"
    assert body["Config"]["Version"] == double.version
    assert body["Member"]["Tags"]["dc"] == "eu-west-1"


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({}, 403, "Permission denied: anonymous token " + AGENT_READ_DENIED),
        ({"X-Consul-Token": "no-such-token"}, 403, "ACL not found"),
        ({"X-Consul-Token": "backup-only"}, 403, AGENT_READ_DENIED),
        ({"X-Consul-Token": "monitor"}, 200, '"Datacenter": "dc1"'),
        ({"X-Consul-Token": "root-token"}, 200, '"Datacenter": "dc1"'),
        ({"Authorization": "Bearer monitor"}, 200, '"Datacenter": "dc1"'),
    ],
    ids=["no token", "unknown token", "without agent:read", "agent reader", "management", "bearer"],
)
def test_agent_self_needs_agent_read(headers, status, words):
    double = ConsulDouble(tokens={"root-token": True, "backup-only": False})
    double.agent_readers.add("monitor")
    with double:
        response = requests.get(f"{double.address}/v1/agent/self", headers=headers, timeout=10)
    assert (response.status_code, words in response.text) == (status, True), response.text
    if "without" in words:
        assert f"AccessorID '{double.accessor_id('backup-only')}'" in response.text


def test_agent_self_answers_anyone_without_acls_and_an_agent_reader_cannot_take_snapshots():
    with ConsulDouble(acl_enabled=False) as open_double:
        assert requests.get(f"{open_double.address}/v1/agent/self", timeout=10).status_code == 200
    with ConsulDouble(agent_readers={"monitor"}) as double:
        snapshot = requests.get(
            f"{double.address}/v1/snapshot", headers={"X-Consul-Token": "monitor"}, timeout=10
        )
        assert snapshot.status_code == 403 and "lacks permission 'acl:write'" in snapshot.text
        anonymous = requests.get(f"{double.address}/v1/snapshot", timeout=10)
        assert anonymous.text == ANONYMOUS_DENIED
        wrong_method = requests.put(
            f"{double.address}/v1/agent/self", headers=MANAGEMENT, timeout=10
        )
        assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "OPTIONS,GET"


# --- PUT /v1/snapshot: a restore round trip -----------------------------------


def test_a_restore_round_trip_serves_back_the_same_state_bin():
    state = RaftState(index=800, term=6, state=ConsulState(seed=3, last_index=800))
    with ConsulDouble(state=state) as source, ConsulDouble() as target:
        archive = take_snapshot(source)
        response = put(target, archive)
        assert response.status_code == 200 and response.text == ""
        assert target.restores == 1
        assert (target.state.index, target.state.term) == (800, 6)
        assert target.state.sha256() == state.sha256()
        received = target.received[-1]
        assert received.sha256 == hashlib.sha256(archive).hexdigest()
        assert (received.size, received.complete, received.restored) == (len(archive), True, True)
        assert received.error is None and received.body == archive
        served = members_of(take_snapshot(target))
        assert served["state.bin"] == bytes_of(state)
        meta = json.loads(served["meta.json"])
        assert (meta["Index"], meta["Term"], meta["Size"]) == (800, 6, state.length)


def test_a_restore_replaces_a_prepared_archive_with_the_restored_state():
    with ConsulDouble(archive_body=b"an archive the double was told to serve") as target:
        assert put(target, archive_bytes(RaftState(index=30, term=2))).status_code == 200
        assert target.archive_body is None and target.archive_file is None
        served = members_of(take_snapshot(target))["state.bin"]
        assert served == bytes_of(RaftState(index=30, term=2))


# --- PUT /v1/snapshot: what Consul refuses leaves the state as it was ---------------

OTHER = RaftState(index=40, term=3, state=ConsulState(seed=9, last_index=40))
OTHER_ARCHIVE = archive_bytes(OTHER)


def chunked(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"  # and never the last chunk, 0\r\n\r\n


REFUSALS: dict[str, tuple[Callable[[ConsulDouble], requests.Response | bytes], str, bool]] = {
    "a body cut before its Content-Length": (
        lambda d: put_and_hang_up(
            d, {"Content-Length": str(len(OTHER_ARCHIVE))}, OTHER_ARCHIVE[: len(OTHER_ARCHIVE) // 2]
        ),
        "failed to read snapshot file: failed to read or write snapshot data: unexpected EOF",
        False,
    ),
    "a whole archive, but fewer bytes than Content-Length says": (
        lambda d: put_and_hang_up(
            d, {"Content-Length": str(len(OTHER_ARCHIVE) + 10)}, OTHER_ARCHIVE
        ),
        "unexpected EOF",
        False,
    ),
    "a chunked body without its last chunk": (
        lambda d: put_and_hang_up(d, {"Transfer-Encoding": "chunked"}, chunked(OTHER_ARCHIVE)),
        "unexpected EOF",
        False,
    ),
    "a gzip stream without its trailer": (
        lambda d: put(d, OTHER_ARCHIVE[:-8]),
        "unexpected EOF",
        True,
    ),
    "SHA256SUMS that do not match": (
        lambda d: put(d, archive_bytes(OTHER, ArchiveDefects(wrong_hash_for="state.bin"))),
        "failed to read snapshot file: failed checking integrity of snapshot: hash check failed "
        'for "state.bin"',
        True,
    ),
    "a member Consul does not know": (
        lambda d: put(d, archive_bytes(OTHER, ArchiveDefects(extra_member="evil.sh"))),
        'failed to read snapshot file: unexpected file "evil.sh" in snapshot',
        True,
    ),
    "bytes after the end of the tar": (
        lambda d: put(d, Snapshot(state=GOOD_STATE, after=b"junk").archive()),
        "4 unread uncompressed bytes remain",
        True,
    ),
    "meta.json's Size is not state.bin's": (
        lambda d: put(d, Snapshot(state=GOOD_STATE, meta=meta_for(GOOD_STATE, Size=1)).archive()),
        "Raft error when restoring snapshot: failed to write snapshot, size didn't match "
        f"({len(GOOD_STATE)} != 1)",
        True,
    ),
    "a snapshot version Raft does not restore": (
        lambda d: put(
            d, Snapshot(state=GOOD_STATE, meta=meta_for(GOOD_STATE, Version=2)).archive()
        ),
        "Raft error when restoring snapshot: unsupported snapshot version 2",
        True,
    ),
    "an empty state.bin": (
        lambda d: put(d, archive_bytes(RaftState(index=40, term=3, data=b""))),
        "failed to restore snapshot: EOF",
        True,
    ),
    "a Deregister record": (
        lambda d: put(d, Snapshot(state=state_bin((2, DIR_ENTRY), (1, {"Node": "n"}))).archive()),
        "failed to restore snapshot: Unrecognized msg type 1",
        True,
    ),
    "a Consul Enterprise record (type 64)": (
        lambda d: put(d, Snapshot(state=state_bin((64, {"Partition": "p"}))).archive()),
        "failed to restore snapshot: msg type <64> is a Consul Enterprise log entry. "
        "Consul CE cannot restore it",
        True,
    ),
    # go-msgpack reads a value unit by unit: an end inside a unit is "unexpected EOF",
    # an end between two units (here, before the last value's descriptor) "EOF".
    "a record cut inside a key": (
        lambda d: put(d, Snapshot(state=GOOD_STATE[:-2]).archive()),
        "failed to restore snapshot: unexpected EOF",
        True,
    ),
    "a record cut before its last value": (
        lambda d: put(d, Snapshot(state=GOOD_STATE[:-1]).archive()),
        "failed to restore snapshot: EOF",
        True,
    ),
    "a type byte without its record": (
        lambda d: put(d, Snapshot(state=GOOD_STATE + b"\x02").archive()),
        "failed to restore snapshot: EOF",
        True,
    ),
    "a header that is not a map": (
        lambda d: put(d, Snapshot(state=b"x" * 100).archive()),
        "failed to restore snapshot: codec.decoder: Only encoded map or array can be decoded "
        "into a struct. (valueType: 2)",
        True,
    ),
    "a stale restore": (
        lambda d: requests.put(
            f"{d.address}/v1/snapshot?stale", data=OTHER_ARCHIVE, headers=MANAGEMENT, timeout=30
        ),
        "stale not allowed for restore",
        True,
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_a_refused_restore_leaves_the_state_as_it_was_and_is_recorded(case):
    send, error, complete = REFUSALS[case]
    before = RaftState(index=500, term=4, state=ConsulState(seed=7, last_index=500))
    with ConsulDouble(state=before) as double:
        answer = send(double)
        if isinstance(answer, requests.Response):
            assert (answer.status_code, answer.text) == (500, error)
        else:  # the client hung up, but the double still answered what it could
            assert answer.startswith(b"HTTP/1.1 500") and answer.endswith(error.encode())
        assert double.state is before and double.restores == 0
        [received] = double.received
        assert (received.complete, received.restored, received.error) == (complete, False, error)
        scratch = double.scratch_dir()
        assert list(scratch.iterdir()) == []  # no state.bin left behind
        assert members_of(take_snapshot(double))["state.bin"] == bytes_of(before)


def test_a_restore_without_acl_write_is_answered_after_its_body_and_recorded():
    body = archive_bytes(RaftState(size=4 << 20, seed=2))  # more than socket buffers hold
    with ConsulDouble() as double:
        before = double.state
        response = requests.put(
            f"{double.address}/v1/snapshot",
            data=body,
            headers={"X-Consul-Token": "not-a-token"},
            timeout=30,
        )
        assert (response.status_code, response.text) == (403, "ACL not found")
        [received] = double.received
        assert (received.size, received.complete, received.restored) == (len(body), True, False)
        assert received.error == "ACL not found" and double.state is before


def test_a_state_bin_in_newer_msgpack_forms_restores():
    # Consul's reader takes str 8 and bin (which its writer never emits), and so does the double.
    with ConsulDouble() as double:
        response = put(double, Snapshot(state=GOOD_STATE).archive())
        assert response.status_code == 200, response.text
        assert double.state.data == GOOD_STATE and double.state.index == 13


def test_every_record_type_the_writer_emits_is_restored_and_reads_as_a_fixint():
    assert all(msg_type < 0x80 for msg_type in RESTORED_TYPES)  # also a msgpack positive fixint
    records = ConsulState().expected["records"]
    emitted = {number for number, name in MESSAGE_TYPE_NAMES.items() if name in records}
    assert len(emitted) == len(records) and emitted <= RESTORED_TYPES


def test_a_64_mib_restore_streams_without_holding_the_body(tmp_path):
    source = RaftState(index=900, term=2, size=64 << 20, seed=4)
    archive = tmp_path / "large.snap"
    with archive.open("wb") as out:
        write_archive(out, source)
    with ConsulDouble(record_received=False) as target:
        tracemalloc.start()
        try:
            with archive.open("rb") as body:
                response = requests.put(
                    f"{target.address}/v1/snapshot", data=body, headers=MANAGEMENT, timeout=300
                )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 200, response.text
        assert peak < 16 << 20, f"peak {peak} bytes for a {archive.stat().st_size}-byte body"
        restored = target.state.file  # beyond RESTORED_IN_MEMORY_LIMIT, kept on disk
        assert restored is not None and target.state.length > RESTORED_IN_MEMORY_LIMIT
        assert target.state.sha256() == source.sha256()
    assert not restored.exists() and not restored.parent.exists()  # stop() cleans up


def test_the_command_line_double_serves_a_real_state_of_the_size_asked_for():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "testbed.consul_double", "--port", str(port), "--token", "",
         "--state-bytes", "300000", "--datacenter", "dc9"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        address = f"http://127.0.0.1:{port}"
        wait_until_serving(address, "/v1/agent/self")
        assert (
            requests.get(f"{address}/v1/agent/self", timeout=10).json()["Config"]["Datacenter"]
            == "dc9"
        )
        archive = requests.get(f"{address}/v1/snapshot", timeout=60).content
        data = members_of(archive)["state.bin"]
        assert len(data) == 300_000
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        unpacker.feed(data)
        assert unpacker.unpack() == {b"LastIndex": 13}
        types = []
        while type_byte := unpacker.read_bytes(1):
            types.append(type_byte[0])
            unpacker.unpack()
        assert types.count(2) >= 1 and types[-1] == 29  # KV entries, then the chunking state
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
