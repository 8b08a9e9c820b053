"""Run the stack program in process under Pulumi mocks, fresh for every run.

Used by the tests, the benchmark and the demo (which prints what ``pulumi up``
would create without the Pulumi CLI or an AWS account).

Mocks accept duplicate URNs and answer an unmocked invoke with None: this
harness fails on both. In preview mode computed outputs (ARNs, generated
names) stay unknown, as they do in a real ``pulumi preview``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.output import Unknown

ACCOUNT = "123456789012"
REGION = "eu-west-1"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - the marker Pulumi puts on secret values
INVOKES = {
    "aws:index/getRegion:getRegion": {"region": REGION, "name": REGION, "id": REGION},
    "aws:index/getCallerIdentity:getCallerIdentity": {
        "accountId": ACCOUNT,
        "arn": f"arn:aws:iam::{ACCOUNT}:user/test",
        "userId": "AIDATEST",
        "id": ACCOUNT,
    },
    "aws:index/getPartition:getPartition": {
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "reverseDnsPrefix": "com.amazonaws",
        "id": "aws",
    },
}


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What AWS would fill in after create; withheld in preview."""
    service = typ.split(":")[1].split("/")[0]
    out: dict[str, Any] = {"arn": f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}"}
    if typ == "aws:s3/bucket:Bucket":
        out["bucket"] = inputs.get("bucket", f"{name}-0a1b2c3")
        out["arn"] = f"arn:aws:s3:::{out['bucket']}"
    elif typ == "aws:secretsmanager/secret:Secret":
        out["arn"] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        out["name"] = inputs.get("name", f"{name}-0a1b2c3")
        out["arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{out['name']}"
    else:
        out["name"] = inputs.get("name", f"{name}-0a1b2c3")
    if typ == "aws:cloudwatch/eventRule:EventRule":
        out["arn"] = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{out['name']}"
    elif typ == "aws:lambda/function:Function":
        out["arn"] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{out['name']}"
    return out


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, preview: bool) -> None:
        self.preview = preview
        self.resources: list[Resource] = []
        self.invokes: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        self.resources.append(Resource(args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        if not self.preview:
            outputs.update(_computed(args.typ, args.name, args.inputs))
        return (None if self.preview else f"{args.name}-id"), outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        self.invokes.append(args.token)
        if args.token not in INVOKES:
            raise AssertionError(f"unmocked invoke {args.token}")
        return INVOKES[args.token], []


@dataclass
class ProgramRun:
    resources: list[Resource]
    invokes: list[str]
    exports: dict[str, Any] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str) -> Resource:
        found = [r for r in self.resources if r.type == typ and r.name == name]
        assert len(found) == 1, f"expected one {typ} named {name}, found {len(found)}"
        return found[0]


def config_values(config: dict[str, Any]) -> dict[str, str]:
    return {
        key if ":" in key else f"consul-backup:{key}": value
        if isinstance(value, str)
        else json.dumps(value)
        for key, value in config.items()
    }


def run_program(
    config: dict[str, Any],
    *,
    preview: bool = False,
    program: Callable[[], dict[str, Any]] | None = None,
) -> ProgramRun:
    """Run a Pulumi program under new mocks and return what it registered.

    ``program`` returns the outputs to export; by default it is the stack
    program, ``components.program.run()``, reading ``config``.
    """
    from components.program import run

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = RecordingMocks(preview)
    pulumi.runtime.set_mocks(mocks, project="consul-backup", stack="dev", preview=preview)
    values = config_values(config)
    pulumi.runtime.set_all_config(values, [k for k in values if k.endswith(":tokens")])
    body = program or (lambda: run()[1])

    exports: dict[str, Any] = {}

    @pulumi.runtime.test
    def test_program() -> Any:
        outputs = body()
        return pulumi.Output.from_input(outputs).apply(exports.update, run_with_unknowns=True)

    try:
        test_program()
    except BaseException:
        # The failure is raised to the caller; the registrations it left pending
        # are not news, and must not be printed when they are collected later.
        loop.set_exception_handler(lambda _loop, _context: None)
        raise
    duplicates = [
        key for key, n in Counter((r.type, r.name) for r in mocks.resources).items() if n > 1
    ]
    assert not duplicates, f"duplicate URNs: {duplicates}"
    return ProgramRun(mocks.resources, mocks.invokes, exports)


def is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown)


def contains_unknown(value: Any) -> bool:
    if is_unknown(value):
        return True
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return False
