"""Every resource keeps its identity: ``pulumi up`` after the refactoring deletes nothing.

``tests/fixtures/urns-before.json`` holds, per example stack, the type, name
and URN of every resource that the program made before the component became a
composition (commit bccee80, run from ``git archive`` of it with this harness:
``python -m tests.test_urns record``). Today's program must make, for each of
them, a resource of the same type and name whose URN is the old one, or whose
aliases resolve to it (URNs and aliases made as the engine makes them:
``testbed.pulumi_mocks.engine_urn``). What matches nothing would be deleted by
``pulumi up``, and its replacement created: the test names it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed.pulumi_mocks import ACCOUNT, REGION, ProgramRun, run_program
from testbed.stack_file import EXAMPLE_PASSPHRASE, load_stack_config

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "urns-before.json"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SHARED_WITH_VAULT: dict[str, Any] = {
    "clusters": [
        {
            "name": "one",
            "consulAddress": "https://consul.one.internal:8501",
            "tokenSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:one-AbCdEf",
            "vpc": {
                "subnetIds": ["subnet-0123456789abcdef0"],
                "securityGroupIds": ["sg-0123456789abcdef0"],
            },
            "caCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        },
        {
            "name": "two",
            "consulAddress": "http://consul.two.internal:8500",
            "alarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:ops-alerts",
            "schedule": "cron(0 3 * * ? *)",
        },
    ],
    "tokens": {"two": "two-t0ken"},
    "sharedBucket": {
        "kmsKeyArn": KMS_KEY,
        "prefix": "backups/consul/",
        "objectLock": {"mode": "GOVERNANCE", "days": 7},
        "replica": {
            "bucketArn": "arn:aws:s3:::consul-vault-backups",
            "accountId": "210987654321",
        },
    },
}


def example_stacks() -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Name -> (stack config, secret keys): the example stack file, and a shared-bucket stack."""
    dev, dev_secrets = load_stack_config(REPO / "Pulumi.dev.yaml", EXAMPLE_PASSPHRASE)
    return {
        "Pulumi.dev.yaml": (dev, sorted(dev_secrets)),
        "shared bucket with a vault replica": (SHARED_WITH_VAULT, ["consul-backup:tokens"]),
    }


def identities(run: ProgramRun) -> list[dict[str, str]]:
    return sorted(
        ({"type": r.type, "name": r.name, "urn": r.urn} for r in run.resources),
        key=lambda r: r["urn"],
    )


def record() -> dict[str, list[dict[str, str]]]:
    return {
        name: identities(run_program(config, secret_keys=secrets))
        for name, (config, secrets) in example_stacks().items()
    }


@pytest.mark.parametrize("stack", ["Pulumi.dev.yaml", "shared bucket with a vault replica"])
def test_every_resource_of_before_is_a_resource_of_today(stack):
    before = json.loads(FIXTURE.read_text())[stack]
    config, secrets = example_stacks()[stack]
    today = run_program(config, secret_keys=secrets)
    known_as = {(r.type, r.name, urn): r for r in today.resources for urn in (r.urn, *r.aliases)}
    lost = [old for old in before if (old["type"], old["name"], old["urn"]) not in known_as]
    assert not lost, f"pulumi up would delete and recreate: {json.dumps(lost, indent=1)}"
    # Two of today's resources answering to one old URN would be a conflict the engine refuses.
    claimed = [urn for r in today.resources for urn in {r.urn, *r.aliases}]
    assert len(claimed) == len(set(claimed))


def test_the_functions_moved_and_only_their_aliases_keep_them():
    """The check above is not vacuous: resources did move, and without its alias each is lost."""
    before = json.loads(FIXTURE.read_text())["Pulumi.dev.yaml"]
    config, secrets = example_stacks()["Pulumi.dev.yaml"]
    today = run_program(config, secret_keys=secrets)
    old_urns = {old["urn"] for old in before}
    moved = [r for r in today.resources if r.urn not in old_urns]
    new = [r for r in moved if r.type == "consul-backup:index:ScheduledFunction"]
    assert sorted(r.name for r in new) == ["prod", "prod-verify", "staging", "staging-verify"]
    children = [r for r in moved if "ScheduledFunction$" in r.urn]
    # Role, policy, log group, function, rule, permission, target and two alarms each.
    assert len(children) == 9 * len(new), sorted(r.name for r in children)
    # All else of today's stack that is not of before is new in this wave.
    added = {r.name for r in moved if r not in new and r not in children}
    assert added == {"prod-content-drop", "staging-content-drop"}
    for resource in children:
        assert "ScheduledFunction$" in resource.urn, resource.name
        [old] = set(resource.aliases) & old_urns
        assert old.endswith(f"::{resource.name}") and "ScheduledFunction" not in old


if __name__ == "__main__" and sys.argv[1:] == ["record"]:
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
