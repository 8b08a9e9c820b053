"""`make demo` end to end: exit 0, restores identical, and no server left running."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_demo_runs_to_the_end_and_stops_its_servers():
    done = subprocess.run(
        [sys.executable, "-m", "testbed.demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "cluster prod:" in out and "cluster staging:" in out
    # A restore per cluster after a loss, and one of the held snapshot after damage.
    assert out.count("IDENTICAL") == 3
    assert out.count("$ consul-backup restore") == 3
    assert "the same SHA-256 as its manifest records" in out
    assert "$ consul-backup inspect" in out and "$ consul-backup diff" in out
    assert "flagged: KV entries 600 -> 201" in out and "content-drop" in out
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out)]
    assert ports
    for port in set(ports):
        with socket.socket() as probe:
            probe.settimeout(1)
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
