"""The README's generated sections say what the code says: schema, environment, exit codes."""

from __future__ import annotations

from snapshot_backup.environment import ENV_DOCS, EnvVar
from testbed.readme_sections import README, render, section_names, sections


def test_every_generated_section_is_in_the_readme():
    assert sorted(section_names(README.read_text())) == sorted(sections())


def test_the_readme_agrees_with_the_code():
    text = README.read_text()
    assert render(text) == text, "run `make readme` (python -m testbed.readme_sections)"


def test_every_environment_variable_is_documented():
    assert set(ENV_DOCS) == set(EnvVar)
