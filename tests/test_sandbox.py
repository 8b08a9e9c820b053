"""`make sandbox`: it serves what it prints, the CLI works against it, and it stops everything."""

from __future__ import annotations

import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from testbed.sandbox import READY

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "consul-backup"


def read_until_ready(sandbox: subprocess.Popen[str], seconds: float = 90.0) -> list[str]:
    """The sandbox's lines up to the one that says it is ready (read on a thread: no hang)."""
    assert sandbox.stdout is not None
    stdout = sandbox.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def forward() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)  # the sandbox closed its output: it ended

    threading.Thread(target=forward, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while not any(READY in line for line in seen):
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise AssertionError(f"not ready within {seconds:.0f} s: {seen}") from None
        assert line is not None, "the sandbox ended before it was ready:\n" + "".join(seen)
        seen.append(line)
    return seen


def exported(lines: list[str]) -> dict[str, str]:
    """The variables of the first ``export`` line, read as a shell would."""
    line = next(line for line in lines if line.startswith("export AWS_"))
    return dict(word.split("=", 1) for word in shlex.split(line)[1:])


def refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((parts.hostname or "", parts.port or 0)) != 0


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_the_sandbox_serves_the_cli_and_stops_everything(stop):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONSUL_"))}
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "testbed.sandbox"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = read_until_ready(sandbox)
        variables = exported(lines)
        assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "BACKUP_BUCKET", "CLUSTER_NAME",
                "CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN"} <= variables.keys()  # fmt: skip
        assert f"kill {sandbox.pid}" in "".join(lines)
        listed = subprocess.run(
            [str(SCRIPT), "list", "--json"], env={**env, **variables},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert f'"cluster": "{variables["CLUSTER_NAME"]}"' in listed.stdout
        verified = subprocess.run(
            [str(SCRIPT), "verify", "latest"], env={**env, **variables},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stderr
        sandbox.send_signal(stop)
        assert sandbox.wait(timeout=30) == 0
    finally:
        if sandbox.poll() is None:
            sandbox.kill()
            sandbox.wait()
    assert refuses_connections(variables["AWS_ENDPOINT_URL"])  # moto's child is gone
    assert refuses_connections(variables["CONSUL_HTTP_ADDR"])
