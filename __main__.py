"""consul-backup stack program: one ConsulSnapshotBackup per cluster in stack config."""

from components.program import run

run()
