"""The README's generated sections, made from the code that owns each fact.

The configuration reference comes from the component's schema, the function's
environment table from its contract, the CLI's exit codes from their enum.
``python -m testbed.readme_sections`` rewrites them in README.md; a test fails
while the README and the code disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from components.reference import configuration_table, shared_bucket_table
from consul_backup.exit_codes import ExitCode
from snapshot_backup.environment import ENV_DOCS, EnvVar

README = Path(__file__).resolve().parent.parent / "README.md"
_SECTION = re.compile(
    r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end of generated -->)", re.S
)


def sections() -> dict[str, str]:
    return {
        "configuration-reference": configuration_table(),
        "shared-bucket-reference": shared_bucket_table(),
        "function-environment": _environment_table(),
        "exit-codes": _exit_code_table(),
    }


def _environment_table() -> str:
    rows = ["| variable | meaning |", "|---|---|"]
    rows += [f"| `{variable}` | {ENV_DOCS[variable]} |" for variable in EnvVar]
    return "\n".join(rows)


def _exit_code_table() -> str:
    rows = ["| exit code | meaning |", "|---|---|"]
    rows += [f"| {code.value} | {code.meaning} |" for code in ExitCode]
    return "\n".join(rows)


def render(text: str) -> str:
    """``text`` with every generated section replaced by what the code says now."""
    made = sections()

    def replace(match: re.Match[str]) -> str:
        return f"{match[1]}{made[match['name']]}\n{match[4]}"

    return _SECTION.sub(replace, text)


def section_names(text: str) -> list[str]:
    return [match["name"] for match in _SECTION.finditer(text)]


def main() -> int:
    text = README.read_text()
    rendered = render(text)
    if rendered != text:
        README.write_text(rendered)
        print("README.md: generated sections rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
