"""Run the stack program in process under Pulumi mocks, fresh for every run.

Used by the tests, the benchmark and the demo (which prints what ``pulumi up``
would create without the Pulumi CLI or an AWS account).

Mocks accept duplicate URNs and answer an unmocked invoke with None: this
harness fails on both. In preview mode computed outputs (ARNs, generated
names) stay unknown, as they do in a real ``pulumi preview``.

URNs are made as the Pulumi engine makes them, not as the SDK's mock monitor
does: the parent's whole qualified type chain (``a$b$type``), the root stack's
type left out (pulumi/pulumi ``resource.NewURN``: ``parentType != RootStackType``).
Each resource's aliases are resolved to URNs the way the engine resolves alias
specs (an unset name, type or parent is the resource's current one), so a test
can prove that a refactoring keeps every resource's identity.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.output import Unknown
from pulumi.runtime.mocks import MockMonitor

ACCOUNT = "123456789012"
REGION = "eu-west-1"
# How Pulumi marks a secret value on the wire: {SECRET_SIG: SECRET_KIND, "value": ...}.
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - the marker Pulumi puts on secret values
SECRET_KIND = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 - the signature of a secret value
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


ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
PROJECT = "consul-backup"
STACK = "dev"


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]
    urn: str = ""
    parent: str = ""  # the parent's URN; the root stack's for a top-level resource
    aliases: tuple[str, ...] = ()  # the URNs this resource answers to besides its own
    retain_on_delete: bool = False
    provider: str = ""  # "<provider URN>::<id>" of an explicit provider; "" for the default


@dataclass(frozen=True)
class Registration:
    """What the engine is told of one resource, besides its inputs."""

    urn: str
    parent: str
    aliases: tuple[str, ...]
    retain_on_delete: bool
    provider: str


def engine_urn(stack: str, project: str, parent_urn: str, type_: str, name: str) -> str:
    """A URN as the engine makes it: the parent's qualified type chain, without the root stack."""
    if parent_urn:
        parent_type = parent_urn.split("::")[2]
        if parent_type != ROOT_STACK_TYPE:
            type_ = f"{parent_type}${type_}"
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


class EngineUrnMonitor(MockMonitor):
    """The SDK's mock monitor, making URNs and resolving aliases as the engine does."""

    def __init__(self, mocks: pulumi.runtime.Mocks, stack: str, project: str) -> None:
        super().__init__(mocks)
        self.stack, self.project = stack, project
        self.registrations: dict[tuple[str, str], Registration] = {}
        self._by_urn: dict[str, Registration] = {}

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return engine_urn(self.stack, self.project, parent, type_, name)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method's name
        response = super().RegisterResource(request)
        if request.type != ROOT_STACK_TYPE:
            registration = Registration(
                urn=response.urn,
                parent=request.parent,
                aliases=tuple(self._alias_urns(request)),
                retain_on_delete=bool(request.retainOnDelete),
                provider=request.provider,
            )
            self.registrations[(request.type, request.name)] = registration
            self._by_urn[response.urn] = registration
        return response

    def _alias_urns(self, request: Any) -> list[str]:
        """Every URN the resource answers to: its own aliases, and those its parent's imply."""
        found: list[str] = []
        for alias in request.aliases:
            if alias.WhichOneof("alias") == "urn":
                found.append(alias.urn)
                continue
            spec = alias.spec
            parent = "" if spec.noParent else (spec.parentUrn or request.parent)
            found.append(
                engine_urn(
                    spec.stack or self.stack,
                    spec.project or self.project,
                    parent,
                    spec.type or request.type,
                    spec.name or request.name,
                )
            )
        # A parent known by another URN before makes its children known by theirs
        # under it (the engine's inherited child aliases).
        parent = self._by_urn.get(request.parent)
        for parent_alias in parent.aliases if parent else ():
            for own in (request.name, *(a.spec.name for a in request.aliases if a.spec.name)):
                found.append(engine_urn(self.stack, self.project, parent_alias, request.type, own))
        return sorted(set(found))


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
    secret_keys: Collection[str] | None = None,
) -> ProgramRun:
    """Run a Pulumi program under new mocks and return what it registered.

    ``program`` returns the outputs to export; by default it is the stack
    program, ``components.program.run()``, reading ``config``. ``secret_keys``
    are the config keys set with ``--secret`` (full keys, ``consul-backup:tokens``);
    by default the tokens, as ``pulumi config set --secret`` leaves them.
    """
    from components.program import run

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = RecordingMocks(preview)
    monitor = EngineUrnMonitor(mocks, STACK, PROJECT)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=STACK, preview=preview, monitor=monitor)
    values = config_values(config)
    if secret_keys is None:
        secret_keys = [k for k in values if k.endswith(":tokens")]
    pulumi.runtime.set_all_config(values, list(secret_keys))
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
    for resource in mocks.resources:
        registration = monitor.registrations[(resource.type, resource.name)]
        resource.urn, resource.parent = registration.urn, registration.parent
        resource.aliases = registration.aliases
        resource.retain_on_delete = registration.retain_on_delete
        resource.provider = registration.provider
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
