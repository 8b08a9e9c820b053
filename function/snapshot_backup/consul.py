"""A small client for Consul's snapshot endpoint, on botocore's urllib3.

``GET /v1/snapshot`` only starts to answer once the server has written the whole
snapshot to its own disk, so the read timeout is generous. The body carries no
Content-Length and a failure after the first byte still arrives as 200, so this
client never trusts a snapshot: callers must verify what they read.
"""

from __future__ import annotations

import json
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, Protocol, cast
from urllib.parse import quote, urlsplit

import urllib3

from .deadline import MIN_WAIT_SECONDS, Deadline
from .gunzip import GunzipReader

SNAPSHOT_PATH = "/v1/snapshot"
AGENT_SELF_PATH = "/v1/agent/self"
AGENT_SELF_TIMEOUT = 10.0
# How long a restore may take once its body is sent, before it is given up on.
RESTORE_ANSWER_SECONDS = 3600.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 300.0
RETRY_DELAY_CAP = 30.0


def retry_delays(retries: int) -> tuple[float, ...]:
    """Waits before each retry (1 s, 3 s, 9 s, ... capped); jitter is added to each."""
    return tuple(min(RETRY_DELAY_CAP, 3.0**attempt) for attempt in range(retries))


DEFAULT_RETRY_DELAYS = retry_delays(3)
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class ByteSource(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ConsulError(Exception):
    """Consul could not be reached or refused the request."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def normalize_address(address: str) -> str:
    """Turn ``CONSUL_HTTP_ADDR`` into a base URL; a bare ``host:port`` means http."""
    text = address.strip()
    if not text:
        raise ValueError("the Consul address is empty")
    parts = urlsplit(text if "://" in text else "http://" + text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// Consul address")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class ConsulSettings:
    address: str
    token: str | None = None
    # Where the token came from, when it came from Secrets Manager.
    token_secret_arn: str | None = None
    datacenter: str | None = None
    stale: bool = False
    ca_cert_file: str | None = None
    ca_cert_pem: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS

    def __repr__(self) -> str:  # keep the token out of every repr and traceback
        token = "<set>" if self.token else "<unset>"
        return f"ConsulSettings(address={self.address!r}, token={token}, dc={self.datacenter!r})"


@dataclass(frozen=True)
class SnapshotStream:
    """An open ``GET /v1/snapshot`` response: headers known, body not yet read."""

    response: Any  # urllib3.BaseHTTPResponse
    # The headers as sent; None when absent or not a number. Informational only:
    # the snapshot's identity is its meta.json, which a proxy cannot strip.
    consul_index: int | None
    known_leader: bool
    last_contact_ms: int | None
    consul_index_header: str | None = None

    @classmethod
    def of(cls, response: Any) -> SnapshotStream:
        headers = response.headers
        return cls(
            response=response,
            consul_index=_header_number(headers.get("X-Consul-Index")),
            known_leader=headers.get("X-Consul-KnownLeader", "") == "true",
            last_contact_ms=_header_number(headers.get("X-Consul-LastContact")),
            consul_index_header=headers.get("X-Consul-Index"),
        )

    @property
    def archive(self) -> IO[bytes]:
        """The archive bytes, with any transfer gzip the agent added taken off."""
        if self.response.headers.get("Content-Encoding", "").lower() == "gzip":
            return cast(IO[bytes], GunzipReader(self.response))
        return cast(IO[bytes], self.response)

    def interrupt(self) -> None:
        """Make a read that is blocked on this stream, in another thread, return now.

        Closing a socket does not wake a thread blocked in recv(); shutting
        down its reading side does: the read then sees the stream end.
        """
        try:
            shutdown = getattr(self.response, "shutdown", None)  # urllib3 >= 2.3
            if shutdown is not None:
                shutdown()
                return
            connection = getattr(self.response, "_connection", None)  # urllib3 1.26
            sock = getattr(connection, "sock", None)
            if sock is not None:
                sock.shutdown(socket.SHUT_RD)
        except (OSError, ValueError):
            pass  # already closed or released: no read can be waiting on it

    def close(self) -> None:
        # Closed first: a half-read connection must never go back to the pool.
        self.response.close()
        self.response.release_conn()


def _header_number(value: str | None) -> int | None:
    """An unsigned decimal header value; None for one that is absent, negative or not a number."""
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        return None
    number = int(text)
    return number if number < 1 << 64 else None


def _build_pool(settings: ConsulSettings) -> urllib3.PoolManager:
    context: ssl.SSLContext | None = None
    if settings.ca_cert_file or settings.ca_cert_pem:
        context = ssl.create_default_context(
            cafile=settings.ca_cert_file or None, cadata=settings.ca_cert_pem or None
        )
    return urllib3.PoolManager(
        ssl_context=context,
        timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
        retries=False,
    )


def _body_text(response: Any) -> str:
    try:
        raw: bytes = response.read(64 << 10, decode_content=True)
    except Exception:  # noqa: BLE001 - the status already tells what went wrong
        raw = b""
    return raw.decode("utf-8", "replace").strip()


class ConsulClient:
    """Consul's snapshot endpoint; with a ``deadline``, no wait in ``open_snapshot`` outlasts it.

    ``ConsulClient(settings)`` (the CLI) waits as long as the settings say.
    """

    def __init__(
        self,
        settings: ConsulSettings,
        sleep: Callable[[float], None] = time.sleep,
        deadline: Deadline | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = normalize_address(settings.address)
        self.deadline = deadline or Deadline(None)
        self._pool = _build_pool(settings)
        self._sleep = sleep

    def use_token(self, token: str) -> None:
        """Send ``token`` from now on (read again after a rotation)."""
        self.settings = replace(self.settings, token=token)

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "consul-backup"}
        if self.settings.token:
            headers["X-Consul-Token"] = self.settings.token
        return headers

    def _query(self) -> dict[str, str]:
        query: dict[str, str] = {}
        if self.settings.datacenter:
            query["dc"] = self.settings.datacenter
        if self.settings.stale:
            query["stale"] = ""
        return query

    def open_snapshot(self) -> SnapshotStream:
        """Start ``GET /v1/snapshot``; retry only while no byte has been accepted.

        The deadline bounds the whole of it: every attempt's connect and read
        timeouts end by the deadline, no attempt starts with less than
        ``MIN_WAIT_SECONDS`` left, and a retry whose backoff would leave less
        than that is not made. Each of these raises ``DeadlineError``, in time
        for the run to abort and log before Lambda stops it.
        """
        headers = self._headers()
        # Without this the agent's gzip handler may gzip the archive a second time.
        headers["Accept-Encoding"] = "identity"
        url = self.base_url + SNAPSHOT_PATH
        attempts = len(self.settings.retry_delays) + 1
        for attempt in range(attempts):
            timeout = self._attempt_timeout()
            try:
                response = self._pool.request(
                    "GET",
                    url,
                    fields=self._query(),
                    headers=headers,
                    preload_content=False,
                    decode_content=False,
                    timeout=timeout,
                )
            except urllib3.exceptions.HTTPError as exc:
                unreachable = ConsulError(
                    f"Consul at {self.base_url} is unreachable after {attempt + 1} attempts: {exc}"
                )
                self._retry_or_raise(attempt, unreachable, cause=exc)
                continue
            if response.status == 200:
                return SnapshotStream.of(response)
            body = _body_text(response)
            response.release_conn()
            refused = ConsulError(
                f"Consul refused the snapshot ({response.status}): {body or '(empty body)'}",
                status=response.status,
                body=body,
            )
            if response.status not in RETRYABLE_STATUSES:
                raise refused
            self._retry_or_raise(attempt, refused)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt_timeout(self) -> urllib3.Timeout:
        """This attempt's timeouts: the configured ones, ending by the deadline."""
        connect, read = self.settings.connect_timeout, self.settings.read_timeout
        left = self.deadline.remaining()
        if left is None:
            return urllib3.Timeout(connect=connect, read=read)
        if left < MIN_WAIT_SECONDS:
            raise self.deadline.expired(
                f"no time left to ask Consul at {self.base_url} for a snapshot"
            )
        # total: connecting and waiting for the answer together, not each in turn.
        return urllib3.Timeout(connect=min(connect, left), read=min(read, left), total=left)

    def _retry_or_raise(
        self, attempt: int, failure: ConsulError, cause: BaseException | None = None
    ) -> None:
        """After a failed attempt: wait for the next one, or raise why there is none."""
        attempts = len(self.settings.retry_delays) + 1
        last = attempt == attempts - 1
        left = self.deadline.remaining()
        delay = 0.0 if last else self.settings.retry_delays[attempt]
        delay += random.uniform(0, delay / 2)
        # urllib3 2 makes a refused connection a ConnectTimeoutError too; it is not a wait.
        timed_out = isinstance(cause, urllib3.exceptions.TimeoutError) and not isinstance(
            cause, urllib3.exceptions.NewConnectionError
        )
        if left is not None and left < delay + MIN_WAIT_SECONDS and (timed_out or not last):
            # The deadline ended this attempt's wait, or would end the next
            # attempt before it could start: say so, with what Consul last did.
            out_of_time = self.deadline.expired(
                f"no snapshot from Consul at {self.base_url} after {attempt + 1} of "
                f"{attempts} attempts; the last one: {cause or failure}"
            )
            raise out_of_time from (cause or failure)
        if not last:
            self._sleep(delay)
        elif cause is not None:
            raise failure from cause
        else:
            raise failure

    def agent_datacenter(self, wait: float = AGENT_SELF_TIMEOUT) -> str:
        """The datacenter of the agent at the address (``GET /v1/agent/self``, Config.Datacenter).

        A snapshot restores into a datacenter of the same name: the backup
        records it in the manifest, and ``restore`` compares the target's with it.
        The agent answers from memory: ``wait`` is short, and ends by the deadline.
        """
        left = self.deadline.remaining()
        wait = wait if left is None else min(wait, left)
        if wait < MIN_WAIT_SECONDS:
            raise ConsulError(f"no time left to ask Consul at {self.base_url} its datacenter")
        try:
            response = self._pool.request(
                "GET",
                self.base_url + AGENT_SELF_PATH,
                headers=self._headers(),
                timeout=urllib3.Timeout(total=wait),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ConsulError(f"Consul at {self.base_url} is unreachable: {exc}") from exc
        text = response.data.decode("utf-8", "replace")
        if response.status != 200:
            raise ConsulError(
                f"Consul refused {AGENT_SELF_PATH} ({response.status}): {text.strip()[:500]}",
                status=response.status,
                body=text,
            )
        try:
            datacenter = json.loads(text)["Config"]["Datacenter"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConsulError(f"{AGENT_SELF_PATH} did not say its datacenter") from exc
        if not isinstance(datacenter, str) or not datacenter:
            raise ConsulError(f"{AGENT_SELF_PATH} did not say its datacenter")
        return datacenter

    def restore_snapshot(
        self, archive: ByteSource | Iterable[bytes], size: int | None = None
    ) -> None:
        """``PUT /v1/snapshot`` with the raw archive, streamed from ``archive``.

        ``archive`` is a file-like object or an iterable of chunks; an exception
        the iterable raises cuts the request short of ``size``, and Consul, which
        reads the whole archive before it restores, restores nothing.
        """
        headers = self._headers()
        headers["Content-Type"] = "application/octet-stream"
        if size is not None:
            headers["Content-Length"] = str(size)
        try:
            response = self._pool.urlopen(
                "PUT",
                self.base_url + SNAPSHOT_PATH + self._query_string(),
                body=archive,
                headers=headers,
                chunked=size is None,
                preload_content=False,
                # Consul answers once it has restored: for a large state, minutes.
                timeout=urllib3.Timeout(
                    connect=self.settings.connect_timeout,
                    read=max(self.settings.read_timeout, RESTORE_ANSWER_SECONDS),
                ),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ConsulError(f"Consul at {self.base_url} is unreachable: {exc}") from exc
        body = _body_text(response)
        response.release_conn()
        if response.status != 200:
            raise ConsulError(
                f"Consul refused the restore ({response.status}): {body or '(empty body)'}",
                status=response.status,
                body=body,
            )

    def _query_string(self) -> str:
        dc = self.settings.datacenter
        return f"?dc={quote(dc, safe='')}" if dc else ""
