"""moto in server mode on 127.0.0.1: S3, Secrets Manager and friends over real HTTP."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import urllib3

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_serving(url: str, path: str = "/moto-api/", seconds: float = 30.0) -> None:
    """Poll until an HTTP server answers at ``url`` (any status will do)."""
    http = urllib3.PoolManager(retries=False, timeout=2.0)
    deadline = time.monotonic() + seconds
    while True:
        try:
            http.request("GET", url + path)
            return
        except urllib3.exceptions.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing answered at {url} within {seconds:.0f} s") from None
            time.sleep(0.1)


def _die_with_parent() -> None:
    """In the child: ask Linux to end it when its parent dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the context manager still stops it on a normal exit


@contextmanager
def moto_server(unauthenticated_actions: int | None = None) -> Iterator[str]:
    """A moto server in a child process; yields its endpoint URL and stops it after.

    A child process, not a thread, so that moto's work does not share the GIL
    with the code under test (that would skew the benchmarks). With
    ``unauthenticated_actions``, moto answers that many AWS calls without
    checking credentials (to set up users and buckets), then enforces IAM
    identity policies on every call after.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **FAKE_CREDENTIALS}
    if unauthenticated_actions is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(unauthenticated_actions)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    try:
        wait_until_serving(url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def aws_env(endpoint: str) -> dict[str, str]:
    """The environment that points boto3 at the moto server."""
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
