"""Every failure the CLI can meet, and the exit code and one line it becomes.

The exception classes the CLI raises are defined here, and ``EXIT_CODES``
maps them, the function package's, botocore's and the standard library's onto
``ExitCode``: ``run()`` asks ``failure_of`` and prints one line, never a
traceback (unless ``CONSUL_BACKUP_DEBUG`` asks for one). An exception is
matched by its class's method resolution order, so the most specific entry
wins (``BrokenPipeError`` is an ``OSError``; ``NoRegionError`` a
``BotoCoreError``); whatever no entry names is a bug: ``ExitCode.INTERNAL``,
never 1, which says the snapshot is defective.
"""

from __future__ import annotations

import ssl
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import botocore.exceptions
import urllib3.exceptions

from components.outputs import OutputsError
from snapshot_backup.consul import ConsulError
from snapshot_backup.environment import EnvVar
from snapshot_backup.keys import ClusterNameError
from snapshot_backup.manifest import ManifestError
from snapshot_backup.settings import SettingsError
from snapshot_backup.store import SnapshotNotFoundError
from snapshot_backup.token_source import RedactedError, TokenError
from snapshot_backup.verify import ArchiveError

from .exit_codes import DEBUG_VARIABLE, ExitCode


class CliError(Exception):
    """A failure the CLI itself detects; its class says the exit code (``EXIT_CODES``)."""


class UsageError(CliError):
    """A flag, a setting or an input that cannot work; ``usage`` is printed before it."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class NoSuchBucketError(UsageError):
    """S3 knows no bucket by that name, or not for these credentials."""

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"no bucket named {bucket} (or no access to it): check --bucket / "
            f"{EnvVar.BACKUP_BUCKET}, and that your AWS credentials are for the bucket's account"
        )
        self.bucket = bucket


class NotConfirmedError(CliError):
    """A restore the operator did not confirm: nothing was sent to Consul."""


class RemoteFailureError(CliError):
    """AWS or Consul answered, with a failure (the deployed function failed, say)."""


class SnapshotArchivedError(CliError):
    """S3 serves the snapshot only after a restore from its archive class."""


class IdentityMismatchError(CliError):
    """The snapshot was taken from another cluster or datacenter than the restore's target."""


class LocalFileError(CliError):
    """A local file (``--output``, ``--outputs``, ``--ca-cert``) could not be read or written."""

    def __init__(self, action: str, path: Path | str, cause: OSError) -> None:
        reason = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(f"cannot {action} {path}: {reason}")
        self.path = Path(path)


class OutputClosedError(CliError):
    """Standard output's reader went away (``consul-backup list | head -1``)."""


# How to give boto3 credentials: said wherever they are missing or refused.
CREDENTIALS_HINT = (
    "give AWS credentials: `aws sso login --profile P` and AWS_PROFILE=P, a profile of "
    "~/.aws/credentials in AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(and AWS_SESSION_TOKEN) in the environment"
)
REGION_HINT = (
    "no AWS region: set AWS_REGION (or `region` in your AWS_PROFILE's config), or pass "
    "--region where the command takes it"
)
# Error codes with which AWS refuses the credentials themselves, not the request.
REFUSED_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
# botocore's complaints about the local configuration: nothing reached AWS.
_LOCAL_AWS_CONFIGURATION = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.ProfileNotFound,
    botocore.exceptions.SSOError,
    botocore.exceptions.TokenRetrievalError,
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.NoRegionError,
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _plain(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _defective(exc: BaseException) -> str:
    return f"DEFECTIVE snapshot: {exc}"


def _aws_configuration(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return REGION_HINT
    return f"AWS credentials: {exc}; {CREDENTIALS_HINT}"


def _aws_refusal(exc: BaseException) -> str:
    assert isinstance(exc, botocore.exceptions.ClientError)
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code in REFUSED_CREDENTIAL_CODES:
        return f"AWS did not accept the credentials ({code}: {error.get('Message', '')}); " + (
            CREDENTIALS_HINT
        )
    return f"AWS refused: {exc}"


def _aws_unreachable(exc: BaseException) -> str:
    return f"AWS: {exc}"


def _local_file(exc: BaseException) -> str:
    assert isinstance(exc, OSError)
    where = f" {exc.filename}" if exc.filename else ""
    return f"local file{where}: {exc.strerror or exc}"


def _network(exc: BaseException) -> str:
    return f"connection failed: {type(exc).__name__}: {exc}"


def _interrupted(exc: BaseException) -> str:
    return "interrupted"


def _internal(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:  # where it was raised: enough to find the bug without the traceback
        where = f", at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}"
    return (
        f"unexpected error (a bug; please report it): {type(exc).__name__}: {exc}{where}; "
        f"{DEBUG_VARIABLE}=1 shows the traceback"
    )


@dataclass(frozen=True)
class Failure:
    """What an exception becomes: the exit code, and the one line that says why."""

    code: ExitCode
    describe: Callable[[BaseException], str] = _plain
    silent: bool = False  # nothing to print: the reader of the output left


EXIT_CODES: Mapping[type[BaseException], Failure] = {
    ArchiveError: Failure(ExitCode.DEFECTIVE, _defective),
    UsageError: Failure(ExitCode.USAGE),
    SettingsError: Failure(ExitCode.USAGE),
    ClusterNameError: Failure(ExitCode.USAGE),
    OutputsError: Failure(ExitCode.USAGE),
    **{kind: Failure(ExitCode.USAGE, _aws_configuration) for kind in _LOCAL_AWS_CONFIGURATION},
    SnapshotNotFoundError: Failure(ExitCode.NOT_FOUND),
    ConsulError: Failure(ExitCode.REMOTE),
    TokenError: Failure(ExitCode.REMOTE),
    RemoteFailureError: Failure(ExitCode.REMOTE),
    botocore.exceptions.ClientError: Failure(ExitCode.REMOTE, _aws_refusal),
    botocore.exceptions.BotoCoreError: Failure(ExitCode.REMOTE, _aws_unreachable),
    urllib3.exceptions.HTTPError: Failure(ExitCode.REMOTE, _network),
    ssl.SSLError: Failure(ExitCode.REMOTE, _network),  # a CA bundle's own is a UsageError
    ConnectionError: Failure(ExitCode.REMOTE, _network),
    TimeoutError: Failure(ExitCode.REMOTE, _network),
    NotConfirmedError: Failure(ExitCode.NOT_CONFIRMED),
    IdentityMismatchError: Failure(ExitCode.WRONG_TARGET),
    ManifestError: Failure(ExitCode.DEFECTIVE, _defective),
    RedactedError: Failure(ExitCode.REMOTE),
    SnapshotArchivedError: Failure(ExitCode.ARCHIVED),
    LocalFileError: Failure(ExitCode.LOCAL_FILE),
    OSError: Failure(ExitCode.LOCAL_FILE, _local_file),
    OutputClosedError: Failure(ExitCode.BROKEN_PIPE, silent=True),
    KeyboardInterrupt: Failure(ExitCode.INTERRUPTED, _interrupted),
    BaseException: Failure(ExitCode.INTERNAL, _internal),
}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def rule_for(exc: BaseException) -> Failure:
    """The entry of ``EXIT_CODES`` for ``exc``'s class or its nearest base class."""
    for kind in type(exc).__mro__:
        if kind in EXIT_CODES:
            return EXIT_CODES[kind]
    return EXIT_CODES[BaseException]


def _what_to_fix(exc: BaseException) -> BaseException:
    """The exception that says what the user must fix.

    A missing credential or region is said as such even when it arrives
    wrapped (the token's secret could not be read for want of credentials);
    S3's ``NoSuchBucket``, from whichever call, is the wrong-bucket usage error.
    """
    for cause in _causes(exc):
        if isinstance(cause, _LOCAL_AWS_CONFIGURATION):
            return cause
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        if error.get("Code") == "NoSuchBucket":
            return NoSuchBucketError(str(error.get("BucketName") or "given"))
    return exc


def failure_of(exc: BaseException) -> tuple[Failure, str]:
    """The exit code and the one line for ``exc``."""
    exc = _what_to_fix(exc)
    failure = rule_for(exc)
    try:
        line = failure.describe(exc)
    except Exception:  # noqa: BLE001 - a failure report must not fail in turn
        line = f"{type(exc).__name__}: {exc}"
    return failure, _one_line(line)
