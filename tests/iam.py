"""IAM decisions from a full policy simulator (``tests/iam_simulate.mjs``, run with node).

moto enforces identity policies but ignores their conditions and cannot
evaluate a resource policy with one; this evaluates requests as AWS documents
IAM, conditions included.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "iam_simulate.mjs"
ACCOUNT = "123456789012"
PRINCIPAL = f"arn:aws:iam::{ACCOUNT}:role/consul-backup-function"


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


def decide(
    identity_policy: dict[str, Any] | None,
    requests: list[Request],
    resource_policy: dict[str, Any] | None = None,
    principal: str = PRINCIPAL,
) -> list[str]:
    """``Allowed``, ``ImplicitlyDenied`` or ``ExplicitlyDenied`` for each request."""
    simulations = [
        {
            "request": {
                "principal": principal,
                "action": request.action,
                "resource": {"resource": request.resource, "accountId": ACCOUNT},
                "contextVariables": dict(request.context),
            },
            "identityPolicies": (
                [{"name": "policy", "policy": identity_policy}] if identity_policy else []
            ),
            "serviceControlPolicies": [],
            "resourceControlPolicies": [],
            "resourcePolicy": resource_policy,
        }
        for request in requests
    ]
    done = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(simulations),
        capture_output=True,
        text=True,
        check=True,
        cwd=SCRIPT.parent.parent,
        timeout=120,
    )
    results: list[Any] = json.loads(done.stdout)
    errors = [r for r in results if isinstance(r, dict)]
    assert not errors, f"the simulator refused a request: {errors}"
    return results
