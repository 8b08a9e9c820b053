"""Progress lines: drawn on a terminal, silent otherwise."""

from __future__ import annotations

import io

from consul_backup.progress import Progress, human_bytes


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_draws_on_a_terminal_and_ends_the_line():
    screen = Terminal()
    progress = Progress("verifying", total=4 << 20, stream=screen)
    progress(b"x" * (1 << 20))
    progress.finish()
    text = screen.getvalue()
    assert "\rverifying [#######" in text and " 25% 1.0 MiB" in text
    assert text.endswith("\n")


def test_silent_when_not_a_terminal():
    pipe = io.StringIO()
    progress = Progress("restoring", total=10, stream=pipe)
    progress(b"0123456789")
    progress.finish()
    assert pipe.getvalue() == ""
    assert progress.done == 10


def test_human_bytes():
    assert [human_bytes(n) for n in (512, 1536, 5 << 20, 3 << 30)] == [
        "512 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]
