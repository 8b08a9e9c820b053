"""Where the Consul ACL token comes from (Secrets Manager in AWS, env locally), and
how it is kept out of every message.

The secret is read once per Lambda container and kept in memory only, so a
schedule of one run an hour costs one GetSecretValue per cold start. After a
rotation, Consul refuses the cached token; ``reread_token`` then reads the
secret again, once.

A token is checked where it is read: Consul's tokens are UUIDs, and a value
that cannot go into an HTTP header (a second line pasted by a hand rotation, a
control character, a letter outside ASCII) is refused there, with an error that
names where it came from, what is wrong and where, never the value. Python's
HTTP client would otherwise refuse it with the whole value in its message.

Every value read as a token is remembered, so that ``Redactor`` can take it
out of any text, record or exception the function logs or raises, whatever
its bytes: defence in depth for errors this module cannot foresee.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from .environment import EnvVar

_cache: dict[str, str] = {}
# Every value read as a token in this process, valid or not: what Redactor hides.
_read: set[str] = set()
_lock = threading.Lock()

# What an HTTP header value may hold here: visible ASCII (RFC 9110 VCHAR), no
# space. A Consul token is a UUID; anything else is a paste gone wrong.
FIRST_VISIBLE, LAST_VISIBLE = 0x21, 0x7E
# Pieces of a token between characters that cannot be sent are hidden on their
# own once they are this long, in case a message quotes only one line of it.
MIN_HIDDEN_PIECE = 8
MIN_REDACTED_TOKEN = 4


class TokenError(Exception):
    """The token could not be read, or is not one that can be sent."""


class RedactedError(Exception):
    """A failure whose text carried a token and could not be cleaned in place.

    Its message is the original's type and text, the token taken out; it has no
    cause or context, so nothing reaches Lambda's error report that holds the token.
    """


def _describe(char: str) -> str:
    """A character that cannot be sent, in words: its code point only when it is a control."""
    code = ord(char)
    if char in "\r\n":
        return f"a line break (U+{code:04X})"
    if char == "\t":
        return "a tab"
    if char == " ":
        return "a space"
    if code < FIRST_VISIBLE or code == 0x7F:
        return f"a control character (U+{code:04X})"
    return "a character outside ASCII"


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be sent in an HTTP header, by position; None when it can."""
    bad = [i for i, char in enumerate(token) if not FIRST_VISIBLE <= ord(char) <= LAST_VISIBLE]
    if not bad:
        return None
    first = bad[0]
    where = f"at position {first + 1} of {len(token)}: {_describe(token[first])}"
    hint = " (two lines pasted into one value?)" if token[first] in "\r\n" else ""
    if len(bad) == 1:
        return f"a character an HTTP header cannot carry {where}{hint}"
    return f"{len(bad)} characters an HTTP header cannot carry, the first {where}{hint}"


def _checked(raw: str, source: str) -> str | None:
    """``raw`` stripped and checked, remembered for redaction; None when empty."""
    token = raw.strip()
    with _lock:
        _read.update(value for value in (raw, token) if value)
    if not token:
        return None
    problem = token_problem(token)
    if problem is not None:
        raise TokenError(
            f"the Consul token in {source} is not a valid HTTP header value: it has {problem}. "
            "Consul tokens are UUIDs; the value is not shown"
        )
    return token


def token_from_secret(secrets_client: Any, secret_arn: str) -> str:
    # The lock is not held across the call: a call the deadline gave up on may
    # still hang on its thread, and must not hold up the next run's read.
    with _lock:
        cached = _cache.get(secret_arn)
    if cached is not None:
        return cached
    try:
        response = secrets_client.get_secret_value(SecretId=secret_arn)
    except Exception as exc:
        raise TokenError(f"cannot read the Consul token from {secret_arn}: {exc}") from exc
    token = _checked(str(response.get("SecretString") or ""), f"secret {secret_arn}")
    if token is None:
        raise TokenError(f"secret {secret_arn} has no SecretString holding the Consul token")
    with _lock:
        _cache[secret_arn] = token
    return token


def reread_token(secrets_client: Any, secret_arn: str) -> str:
    """The secret's value now, not the one cached (after Consul refused that one)."""
    with _lock:
        _cache.pop(secret_arn, None)
    return token_from_secret(secrets_client, secret_arn)


def resolve_token(
    env: Mapping[str, str], secret_arn: str | None, secrets_client_factory: Any
) -> str | None:
    """The token to send, or None to use the agent's default (anonymous) token."""
    if secret_arn:
        return token_from_secret(secrets_client_factory(), secret_arn)
    return _checked(env.get(EnvVar.CONSUL_HTTP_TOKEN) or "", str(EnvVar.CONSUL_HTTP_TOKEN))


def forget_cached_tokens() -> None:
    """Drop cached tokens, and what was read (after a rotation, or between tests)."""
    with _lock:
        _cache.clear()
        _read.clear()


def token_redactor() -> Redactor:
    """A redactor for every token this process has read."""
    with _lock:
        return Redactor(_read)


def spellings(secret: str) -> set[str]:
    """``secret`` as text may show it: as is; escaped as Python, JSON and URLs escape
    it; and each long piece of it between characters a header cannot carry."""
    forms = {secret, repr(secret)[1:-1], ascii(secret)[1:-1], quote(secret, safe="")}
    forms |= {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    for encoding in ("utf-8", "latin-1"):
        with contextlib.suppress(UnicodeEncodeError):  # then nothing printed it as bytes
            forms.add(repr(secret.encode(encoding))[2:-1])
    piece = ""
    for char in secret + "\n":
        if FIRST_VISIBLE <= ord(char) <= LAST_VISIBLE:
            piece += char
            continue
        if len(piece) >= MIN_HIDDEN_PIECE:
            forms.add(piece)
        piece = ""
    return {form for form in forms if form}


class Redactor:
    """Takes tokens out of text, records and exceptions."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # A token of a few characters cannot be told from ordinary text (and is no
        # Consul token: their secrets are UUIDs); masking it would mangle every line.
        kept = [secret for secret in secrets if len(secret) >= MIN_REDACTED_TOKEN]
        forms = set().union(*(spellings(secret) for secret in kept))
        # Longest first, so that a form inside a longer one does not split it.
        self._forms = sorted(forms, key=len, reverse=True)
        used = set("".join(self._forms))
        # A mask of a character no form holds cannot make a form reappear.
        mask = next(chr(c) for c in range(0x2A, 0x110000) if chr(c) not in used)
        self.mask = mask * 3

    def leaks(self, text: str) -> bool:
        return any(form in text for form in self._forms)

    def text(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, self.mask)
        return text

    def record(self, value: Any) -> Any:
        """``value`` (a log record: dicts, lists, strings) with every string redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):  # keys are the record's own field names
            return {k: self.record(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.record(item) for item in value]
        return value

    def exception(self, exc: BaseException) -> BaseException:
        """``exc`` with tokens taken out of its text, notes and chain, in place; or, where
        its text comes from somewhere that cannot be reached, a ``RedactedError`` in its stead."""
        chain = _chain(exc)
        if not self._forms or not any(self._leaky(e) for e in chain):
            return exc
        for link in chain:
            self._clean(link)
        if not any(self._leaky(e) for e in chain):
            return exc
        stand_in = RedactedError(self.text(f"{type(exc).__name__}: {_shown(str, exc)}"))
        stand_in.__suppress_context__ = True
        return stand_in.with_traceback(exc.__traceback__)

    def _leaky(self, exc: BaseException) -> bool:
        texts = [_shown(str, exc), _shown(repr, exc), *map(str, getattr(exc, "__notes__", ()))]
        return any(self.leaks(text) for text in texts)

    def _clean(self, exc: BaseException) -> None:
        exc.args = tuple(self._value(arg) for arg in exc.args)
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [self.text(str(note)) for note in notes]
        for name, value in list(vars(exc).items()):
            if name != "__notes__" and isinstance(value, str | bytes):
                setattr(exc, name, self._value(value))

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            text = value.decode("utf-8", "backslashreplace")
            if not self.leaks(text):
                return value
            return self.text(text).encode("utf-8", "backslashreplace")
        if isinstance(value, BaseException) or not self.leaks(_shown(repr, value)):
            return value  # an exception is cleaned as a link of the chain
        return self.text(_shown(repr, value))


def _shown(render: Callable[[Any], str], value: Any) -> str:
    """``render(value)``, or a placeholder where rendering fails (as Python's traceback does)."""
    try:
        return render(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure being reported
        return f"<{type(value).__name__} that cannot be shown>"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception reachable from it: causes, contexts, and exceptions
    held as attributes (urllib3 keeps the reason for a failure on the error)."""
    seen: dict[int, BaseException] = {}
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen[id(current)] = current
        linked = [current.__cause__, current.__context__, *current.args, *vars(current).values()]
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return list(seen.values())
