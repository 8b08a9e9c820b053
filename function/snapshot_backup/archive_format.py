"""The snapshot archive's layout, defined once for writing and reading.

A Consul snapshot is a gzip stream around a tar of three regular files:
``meta.json``, ``state.bin`` and ``SHA256SUMS``. Consul's writer (Go's
``archive/tar``) gives each a USTAR header carrying name, mode 0600, size and
modification time, pads each member's data to 512 bytes, closes the tar with
two zero blocks and writes nothing after them. A ``state.bin`` of 8 GiB or more
does not fit USTAR's size field; Go then puts a PAX extended header with a
``size`` record before it, and so does ``member_header``.

The verifier reads with ``tar_reader``; the Consul double and the benchmark
write with ``member_header``, so both sides agree on one definition.
"""

from __future__ import annotations

META_MEMBER = "meta.json"
STATE_MEMBER = "state.bin"
SUMS_MEMBER = "SHA256SUMS"
HASHED_MEMBERS = (META_MEMBER, STATE_MEMBER)
MEMBERS = (*HASHED_MEMBERS, SUMS_MEMBER)

BLOCK_BYTES = 512
ZERO_BLOCK = bytes(BLOCK_BYTES)
END_OF_ARCHIVE = ZERO_BLOCK * 2
MEMBER_MODE = 0o600
# The largest size a USTAR header holds: eleven octal digits.
USTAR_MAX_SIZE = 8**11 - 1

_USTAR_MAGIC = b"ustar\x0000"  # magic "ustar\0" and version "00"


def padding_bytes(size: int) -> int:
    """How many zero bytes follow ``size`` bytes of member data."""
    return -size % BLOCK_BYTES


def member_header(name: str, size: int, mtime: int) -> bytes:
    """The header block(s) Consul's writer puts before a member of ``size`` bytes."""
    if size <= USTAR_MAX_SIZE:
        return _ustar_block(name, size, mtime, MEMBER_MODE, typeflag=b"0")
    records = _pax_record("size", str(size))
    pax = _ustar_block(f"PaxHeaders.0/{name}", len(records), 0, 0, typeflag=b"x", devices=False)
    padded = records + bytes(padding_bytes(len(records)))
    return pax + padded + _ustar_block(name, 0, mtime, MEMBER_MODE, typeflag=b"0")


def _ustar_block(
    name: str, size: int, mtime: int, mode: int, typeflag: bytes, devices: bool = True
) -> bytes:
    encoded = name.encode()
    if len(encoded) > 100:
        raise ValueError(f"member name {name!r} is longer than a USTAR name field")
    block = bytearray(BLOCK_BYTES)
    block[0 : len(encoded)] = encoded
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(0, 8)  # uid
    block[116:124] = _octal(0, 8)  # gid
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[156:157] = typeflag
    block[257:265] = _USTAR_MAGIC
    if devices:  # Go leaves them empty in the headers it makes up itself
        block[329:337] = _octal(0, 8)  # devmajor
        block[337:345] = _octal(0, 8)  # devminor
    # The checksum is computed with its own field read as spaces, then written
    # as six octal digits, a NUL and a space.
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def _octal(value: int, width: int) -> bytes:
    """Zero-padded octal digits and a closing NUL, filling ``width`` bytes."""
    return b"%0*o\x00" % (width - 1, value)


def _pax_record(key: str, value: str) -> bytes:
    """``"<length> <key>=<value>\\n"``, where the length counts itself."""
    body = f" {key}={value}\n"
    length = len(body) + len(str(len(body)))
    if len(str(length)) != len(str(len(body))):
        length += 1
    return f"{length}{body}".encode()
