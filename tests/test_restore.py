"""The one-pass restore: Consul gets an archive's tail only once the archive is proven."""

from __future__ import annotations

import threading

import pytest

from consul_backup.exit_codes import ExitCode
from consul_backup.restore import HOLD_BACK_BYTES, HeldBackBody, RequestEndedError, RestoreCutError
from testbed.consul_double import ConsulDouble
from tests.conftest import back_up, cli


def drain(body: HeldBackBody, into: list[bytes], failure: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            into.extend(body)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failure.append(exc)
        finally:
            body.request_ended()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_every_byte_in_order_once_released():
    body = HeldBackBody(hold_back=1000, queued=2)
    received: list[bytes] = []
    thread = drain(body, received, [])
    data = bytes(range(256)) * 200
    for start in range(0, len(data), 777):
        body.feed(data[start : start + 777])
    body.release()
    thread.join()
    assert b"".join(received) == data


def test_a_cut_body_never_carries_its_tail():
    body = HeldBackBody(hold_back=HOLD_BACK_BYTES)
    received: list[bytes] = []
    failures: list[BaseException] = []
    thread = drain(body, received, failures)
    data = b"x" * (5 * HOLD_BACK_BYTES)
    for start in range(0, len(data), 4096):
        body.feed(data[start : start + 4096])
    body.cut("its SHA-256 is not the manifest's")
    thread.join()
    assert isinstance(failures[0], RestoreCutError)
    assert len(b"".join(received)) <= len(data) - HOLD_BACK_BYTES


def test_feeding_a_request_that_ended_says_so_instead_of_blocking():
    body = HeldBackBody(hold_back=10, queued=1)
    body.request_ended()  # Consul answered (or hung up) before the body was sent
    with pytest.raises(RequestEndedError):
        for _ in range(10):
            body.feed(b"y" * 100)


def test_consuls_refusal_of_the_restore_itself_is_what_the_operator_reads(consul, s3, bucket):
    back_up(consul, bucket)
    # The token may read the agent (the identity check), not restore (acl:write).
    with ConsulDouble(tokens={"reader": False}, agent_readers={"reader"}) as target:
        result = cli(
            "restore", "--bucket", bucket, "--cluster", "prod", "latest",
            "--consul-addr", target.address, "--yes", env={"CONSUL_HTTP_TOKEN": "reader"},
        )  # fmt: skip
        assert result.code == ExitCode.REMOTE, result.err
        assert "Consul refused the restore (403)" in result.err
        assert "lacks permission 'acl:write'" in result.err
        assert target.restores == 0
