"""Check ``SHA256SUMS`` as Consul does, and as Consul writes it.

Consul reads the file with Go's ``bufio.Scanner`` (lines end at ``\\n`` only; one
``\\r`` before it is dropped) and parses each line with ``fmt.Sscanf("%x  %s")``:
hex digits, at least one space, then a word that ends at the next space.
Every line is checked against the hashes of the members read, so a name listed
twice with different hashes fails even when one of them is right; then every
hashed member must have had a line. ``check_sums`` gives Consul's verdict in
Consul's words.

Consul's writer is stricter than its reader: exactly one line per hashed member,
``<64 lowercase hex digits>  <name>\\n``. ``layout_problem`` says where a file
that Consul would accept departs from that.
"""

from __future__ import annotations

import re

from .archive_format import HASHED_MEMBERS

# What Go's fmt package counts as space when scanning (newline aside).
_FMT_SPACE = frozenset(
    "\t\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_HEX = "0123456789abcdefABCDEF"
_CONSUL_LINE = re.compile(r"[0-9a-f]{64}  (\S+)\Z")


class SumsError(Exception):
    """Consul refuses the hash list; the message is Consul's."""


def check_sums(raw: bytes, digests: dict[str, bytes]) -> None:
    """Consul's ``DecodeAndVerify``: every line matches, every hashed member listed."""
    seen: set[str] = set()
    for line in _scan_lines(raw):
        digest, name = _scan_line(line)
        if name not in digests:
            raise SumsError(f"list missing hash for {go_quote(name)}")
        if digest != digests[name]:
            raise SumsError(f"hash check failed for {go_quote(name)}")
        seen.add(name)
    for name in digests:
        if name not in seen:
            raise SumsError(f"file missing for {go_quote(name)}")


def layout_problem(raw: bytes) -> str | None:
    """How ``raw`` differs from what Consul's writer produces, or ``None``."""
    if not raw.endswith(b"\n"):
        return "SHA256SUMS does not end with a newline"
    names = []
    for line in raw[:-1].split(b"\n"):
        text = line.decode("utf-8", "replace")
        match = _CONSUL_LINE.match(text)
        if match is None:
            return f"SHA256SUMS line {text!r} is not '<64 lowercase hex>  <name>'"
        names.append(match.group(1))
    if sorted(names) != sorted(HASHED_MEMBERS):
        return f"SHA256SUMS lists {names}, not one line for each of {list(HASHED_MEMBERS)}"
    return None


def _scan_lines(raw: bytes) -> list[str]:
    """``bufio.ScanLines``: split at ``\\n``, drop one ``\\r`` before it, no empty last line."""
    lines = raw.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r").decode("utf-8", "replace") for line in lines]


def _scan_line(line: str) -> tuple[bytes, str]:
    """``fmt.Sscanf(line, "%x  %s", &sha, &file)``, with Sscanf's errors."""
    position = _skip_space(line, 0)
    if position == len(line):
        raise SumsError("EOF")
    digits = position
    while digits < len(line) and line[digits] in _HEX:
        digits += 1
    if digits == position:
        raise SumsError("no hex data for %x string")
    if (digits - position) % 2:
        if digits == len(line):
            raise SumsError("unexpected EOF")
        raise SumsError("illegal hex digit")
    digest = bytes.fromhex(line[position:digits])
    # The two spaces of the format match one or more spaces, or the end.
    if digits < len(line) and line[digits] not in _FMT_SPACE:
        raise SumsError("expected space in input to match format")
    start = _skip_space(line, digits)
    if start == len(line):
        raise SumsError("EOF")
    end = start
    while end < len(line) and line[end] not in _FMT_SPACE:
        end += 1
    return digest, line[start:end]


def _skip_space(line: str, position: int) -> int:
    while position < len(line) and line[position] in _FMT_SPACE:
        position += 1
    return position


def go_quote(text: str) -> str:
    """Go's ``%q`` of a string (``strconv.Quote``), as Consul's messages show names."""
    out = ['"']
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    escapes |= {"\v": "\\v", '"': '\\"', "\\": "\\\\"}
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif "\udc80" <= char <= "\udcff":  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)
