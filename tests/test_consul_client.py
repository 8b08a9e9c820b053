"""The Consul client and the double, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import gzip
import io
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import urllib3

from snapshot_backup.consul import (
    ConsulClient,
    ConsulError,
    ConsulSettings,
    SnapshotStream,
    normalize_address,
)
from snapshot_backup.deadline import MIN_WAIT_SECONDS, Deadline, DeadlineError
from snapshot_backup.verify import verify_archive
from testbed.archive_writer import RaftState
from testbed.consul_double import ConsulDouble, MidStreamFault
from testbed.moto_server import free_port
from testbed.tls import make_private_ca
from tests.archives import Snapshot

FAST = (0.01, 0.01, 0.01)


def client(double: ConsulDouble, **overrides) -> ConsulClient:
    settings: dict[str, Any] = {
        "address": double.address,
        "token": "root-token",
        "retry_delays": FAST,
    }
    settings.update(overrides)
    return ConsulClient(ConsulSettings(**settings))


def read_snapshot(consul_client: ConsulClient):
    snapshot = consul_client.open_snapshot()
    try:
        return snapshot, verify_archive(snapshot.archive)
    finally:
        snapshot.close()


def test_sends_the_token_as_a_header_and_asks_for_no_transfer_gzip(consul):
    snapshot, report = read_snapshot(client(consul))
    request = consul.snapshot_requests()[-1]
    assert request.headers["X-Consul-Token"] == "root-token"
    assert "token" not in request.query  # never in a URL that proxies log
    assert request.headers["Accept-Encoding"] == "identity"
    assert request.query == {}
    assert snapshot.consul_index == consul.state.index == report.meta.index
    assert snapshot.known_leader is True
    assert snapshot.last_contact_ms == 0


def test_sends_dc_and_stale_when_configured(consul):
    consul.datacenters = ("dc1", "eu-west")
    read_snapshot(client(consul, datacenter="eu-west", stale=True))
    assert consul.snapshot_requests()[-1].query == {"dc": ["eu-west"], "stale": [""]}


def test_stale_read_works_without_a_leader(consul):
    consul.has_leader = False
    snapshot, _ = read_snapshot(client(consul, stale=True))
    assert snapshot.known_leader is False
    assert snapshot.last_contact_ms > 0


@pytest.mark.parametrize(
    ("setup", "token", "status", "body"),
    [
        (lambda d: None, "unknown", 403, "ACL not found"),
        (lambda d: d.tokens.update({"ro": False}), "ro", 403, "lacks permission 'acl:write'"),
        (lambda d: setattr(d, "has_leader", False), "root-token", 500, "No cluster leader"),
        (
            lambda d: setattr(d, "ready_for_consistent_reads", False),
            "root-token",
            500,
            "Not ready to serve consistent reads",
        ),
        (lambda d: d.scripted_errors.extend([(429, "")] * 4), "root-token", 429, "(empty body)"),
        (
            lambda d: d.scripted_errors.extend([(500, "No known Consul servers")] * 4),
            "root-token",
            500,
            "No known Consul servers",
        ),
    ],
)
def test_refusals_carry_consuls_status_and_body(consul, setup, token, status, body):
    setup(consul)
    with pytest.raises(ConsulError) as raised:
        client(consul, token=token).open_snapshot()
    assert raised.value.status == status
    message = str(raised.value)
    assert message.startswith(f"Consul refused the snapshot ({status}): ")
    assert body in message


def test_anonymous_requests_get_consuls_permission_error(consul):
    with pytest.raises(ConsulError, match="anonymous token lacks permission 'acl:write'"):
        client(consul, token=None).open_snapshot()


def test_unknown_datacenter(consul):
    with pytest.raises(ConsulError, match=r"\(500\): No path to datacenter"):
        client(consul, datacenter="mars").open_snapshot()


def test_retries_429_and_5xx_then_succeeds(consul):
    consul.scripted_errors.extend([(429, ""), (500, "No cluster leader")])
    read_snapshot(client(consul))
    assert len(consul.snapshot_requests()) == 3


def test_does_not_retry_a_403(consul):
    with pytest.raises(ConsulError):
        client(consul, token="nope").open_snapshot()
    assert len(consul.snapshot_requests()) == 1


def test_gives_up_after_the_configured_retries(consul):
    consul.scripted_errors.extend([(503, "busy")] * 10)
    with pytest.raises(ConsulError, match=r"\(503\): busy"):
        client(consul, retry_delays=(0.01, 0.01)).open_snapshot()
    assert len(consul.snapshot_requests()) == 3


def test_unreachable_consul_is_retried_then_named():
    sleeps: list[float] = []
    address = f"http://127.0.0.1:{free_port()}"
    unreachable = ConsulClient(
        ConsulSettings(address=address, retry_delays=(0.5, 1.0), connect_timeout=1.0),
        sleep=sleeps.append,
    )
    with pytest.raises(ConsulError, match="unreachable after 3 attempts"):
        unreachable.open_snapshot()
    assert len(sleeps) == 2 and sleeps[0] >= 0.5 and sleeps[1] >= 1.0


def test_takes_off_a_transfer_gzip_a_proxy_added_anyway(consul):
    consul.gzip_regardless = True
    _, report = read_snapshot(client(consul))
    assert report.meta.index == consul.state.index


def test_the_double_gzips_twice_when_asked_like_the_agent():
    with ConsulDouble(acl_enabled=False) as double:
        raw = requests.get(
            double.address + "/v1/snapshot",
            headers={"Accept-Encoding": "gzip"},
            stream=True,
            timeout=10,
        )
        assert raw.headers["Content-Encoding"] == "gzip"
        assert "Content-Length" not in raw.headers
        body = raw.raw.read(decode_content=False)
        inner = gzip.decompress(body)
        assert inner[:2] == b"\x1f\x8b"  # the archive itself is gzip, inside the transfer gzip


@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        ("GET", "/v1/snapshot/", 404, "404 page not found"),
        ("POST", "/v1/snapshot", 405, "method POST not allowed"),
    ],
)
def test_the_double_answers_wrong_paths_and_methods_like_consul(consul, method, path, status, text):
    response = requests.request(method, consul.address + path, timeout=10)
    assert (response.status_code, response.text) == (status, text)
    if status == 405:
        assert response.headers["Allow"] == "OPTIONS,GET,PUT"


def test_the_double_reads_the_token_from_query_and_bearer(consul):
    by_query = requests.get(
        consul.address + "/v1/snapshot", params={"token": "root-token"}, timeout=10
    )
    by_bearer = requests.get(
        consul.address + "/v1/snapshot",
        headers={"Authorization": "Bearer root-token"},
        timeout=10,
    )
    assert by_query.status_code == by_bearer.status_code == 200


def test_tls_with_a_private_ca_from_file_and_inline_pem(tmp_path):
    ca = make_private_ca()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.ca_pem)
    with ConsulDouble(tls=ca.server_context()) as double:
        assert double.address.startswith("https://")
        read_snapshot(client(double, ca_cert_file=str(ca_file)))
        read_snapshot(client(double, ca_cert_pem=ca.ca_pem))
        with pytest.raises(ConsulError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            client(double, retry_delays=()).open_snapshot()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:8500", "http://127.0.0.1:8500"),
        ("https://consul.internal:8501/", "https://consul.internal:8501"),
        ("http://10.0.0.1:8500", "http://10.0.0.1:8500"),
    ],
)
def test_addresses_are_read_like_consuls_cli(given, expected):
    assert normalize_address(given) == expected


@pytest.mark.parametrize("bad", ["", "ftp://host", "https://"])
def test_bad_addresses_are_refused(bad):
    with pytest.raises(ValueError):
        normalize_address(bad)


def _read_in_thread(read: Callable[[], bytes]) -> tuple[threading.Thread, list[object]]:
    """Starts ``read`` on a thread; its bytes, or what it raised, land in the list."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(read())
        except Exception as exc:  # noqa: BLE001 - the outcome is what the tests check
            outcome.append(exc)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    return reader, outcome


def test_interrupt_wakes_a_read_blocked_on_a_stalled_stream(consul):
    consul.state = RaftState(index=12, term=2, size=300_000, seed=4)
    consul.fault = MidStreamFault(after_bytes=4096, kind="stall")
    client = ConsulClient(ConsulSettings(address=consul.address, token="root-token"))
    snapshot = client.open_snapshot()
    received = 0
    while received < 4096:  # everything sent before the stall
        chunk = snapshot.archive.read(4096 - received)
        assert chunk, "the stream ended instead of stalling"
        received += len(chunk)
    reader, outcome = _read_in_thread(lambda: snapshot.archive.read(4096))
    reader.join(0.5)
    assert reader.is_alive()  # stalled: the read waits
    snapshot.interrupt()
    reader.join(5)
    assert not reader.is_alive()
    # The chunked body never finished: the read fails rather than passing as an end.
    assert isinstance(outcome[0], urllib3.exceptions.ProtocolError), outcome
    snapshot.close()


def test_interrupt_on_urllib3_1_26_shuts_the_connections_socket_down():
    # urllib3 1.26 (the Lambda runtime may bundle it) has no shutdown(): the
    # socket of the response's connection is shut down instead.
    ours, theirs = socket.socketpair()
    with ours, theirs:
        response = SimpleNamespace(_connection=SimpleNamespace(sock=ours))
        reader, got = _read_in_thread(lambda: ours.recv(1024))
        reader.join(0.2)
        assert reader.is_alive()
        SnapshotStream(response, 1, True, 0).interrupt()
        reader.join(5)
        assert got == [b""]  # the read saw the end of the stream


@pytest.mark.parametrize(
    ("end", "refusal"),
    [
        (b"", None),  # no end marker at all
        (bytes(512), None),  # one zero block, then the end
        (bytes(1024), None),  # the end marker Consul writes
        (bytes(1024) + bytes(9216), "9216 unread uncompressed bytes remain"),  # record padding
        (bytes(1024) + b"junk", "4 unread uncompressed bytes remain"),
        (bytes(600), "unexpected EOF"),
        (bytes(512) + b"\x01" + bytes(511), "archive/tar: invalid tar header"),
    ],
)
def test_the_doubles_restore_ends_the_tar_where_consul_does(consul, end, refusal):
    archive = Snapshot(end=end).archive()
    restores = consul.restores
    if refusal is None:
        client(consul, token="root-token").restore_snapshot(io.BytesIO(archive), size=len(archive))
        assert consul.restores == restores + 1
    else:
        with pytest.raises(ConsulError, match=refusal):
            client(consul, token="root-token").restore_snapshot(
                io.BytesIO(archive), size=len(archive)
            )
        assert consul.restores == restores


class QuietServer:
    """A server on 127.0.0.1 that accepts every connection and, past ``answers``, never answers.

    The first connections get ``answers`` in turn (raw HTTP responses, each sent
    ``answer_after`` seconds after the request arrived); the rest are held open
    in silence, as a Consul whose server is wedged would. Stops by itself on exit.
    """

    def __init__(self, answers: Sequence[bytes] = (), answer_after: float = 0.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.address = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._answers = list(answers)
        self._answer_after = answer_after
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections.append(connection)
            if len(self.connections) <= len(self._answers):
                answer = self._answers[len(self.connections) - 1]
                responder = threading.Thread(
                    target=self._answer, args=(connection, answer), daemon=True
                )
                self._threads.append(responder)
                responder.start()

    def _answer(self, connection: socket.socket, answer: bytes) -> None:
        request = b""
        while b"\r\n\r\n" not in request and (chunk := connection.recv(4096)):
            request += chunk
        if not self._stop.wait(self._answer_after):
            connection.sendall(answer)

    def __enter__(self) -> QuietServer:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for connection in self.connections:
            connection.close()
        self._listener.close()


BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"


def test_a_consul_that_never_answers_is_given_up_at_the_deadline_not_after_the_read_timeout():
    with QuietServer() as quiet:
        started = time.monotonic()
        consul_client = ConsulClient(
            ConsulSettings(address=quiet.address, read_timeout=300, retry_delays=(0.2, 0.2)),
            deadline=Deadline(started + 1.5),
        )
        with pytest.raises(DeadlineError, match=f"no snapshot from Consul at {quiet.address}"):
            consul_client.open_snapshot()
        elapsed = time.monotonic() - started
        # The one attempt waited up to the deadline; no retry was left time for.
        assert 1.4 < elapsed < 1.8
        assert len(quiet.connections) == 1


def test_every_attempt_not_only_the_first_ends_by_the_deadline():
    # Consul says 503 after half a second, then goes quiet. The second attempt
    # starts later than the first: waiting as long as the first could (the old
    # clamp, made once) would end it past the deadline.
    with QuietServer(answers=[BUSY], answer_after=0.5) as quiet:
        started = time.monotonic()
        consul_client = ConsulClient(
            ConsulSettings(address=quiet.address, read_timeout=300, retry_delays=(0.2,)),
            deadline=Deadline(started + 2.0),
        )
        with pytest.raises(
            DeadlineError, match=r"after 2 of 2 attempts; the last one: .*timed out"
        ):
            consul_client.open_snapshot()
        assert 1.9 < time.monotonic() - started < 2.3
        assert len(quiet.connections) == 2


def test_a_retry_whose_backoff_would_cross_the_deadline_is_not_made(consul):
    consul.scripted_errors.extend([(503, "busy")] * 3)
    sleeps: list[float] = []
    deadline = Deadline(time.monotonic() + 3.0)
    consul_client = ConsulClient(
        ConsulSettings(address=consul.address, token="root-token", retry_delays=(5.0, 5.0)),
        sleep=sleeps.append,
        deadline=deadline,
    )
    with pytest.raises(DeadlineError) as raised:
        consul_client.open_snapshot()
    assert "after 1 of 3 attempts; the last one: Consul refused the snapshot (503): busy" in str(
        raised.value
    )
    assert isinstance(raised.value.__cause__, ConsulError)
    assert raised.value.__cause__.status == 503
    assert sleeps == []  # no sleep past the deadline
    assert len(consul.snapshot_requests()) == 1


def test_a_retry_that_fits_before_the_deadline_is_made(consul):
    consul.scripted_errors.append((503, "busy"))
    consul_client = ConsulClient(
        ConsulSettings(address=consul.address, token="root-token", retry_delays=(0.2,)),
        deadline=Deadline(time.monotonic() + 30),
    )
    snapshot = consul_client.open_snapshot()
    snapshot.close()
    assert len(consul.snapshot_requests()) == 2


def test_no_attempt_starts_without_time_left(consul):
    consul_client = ConsulClient(
        ConsulSettings(address=consul.address, token="root-token"),
        deadline=Deadline(time.monotonic() + MIN_WAIT_SECONDS / 2),
    )
    with pytest.raises(DeadlineError, match=f"no time left to ask Consul at {consul.address}"):
        consul_client.open_snapshot()
    assert consul.snapshot_requests() == []


def test_without_a_deadline_the_configured_timeouts_stand():
    # The CLI's client: ConsulClient(settings) waits the read timeout it was given.
    with QuietServer() as quiet:
        started = time.monotonic()
        consul_client = ConsulClient(
            ConsulSettings(address=quiet.address, read_timeout=0.5, retry_delays=())
        )
        with pytest.raises(ConsulError, match=r"unreachable after 1 attempts: .*timed out"):
            consul_client.open_snapshot()
        assert 0.4 < time.monotonic() - started < 1.5
