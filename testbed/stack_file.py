"""Read a Pulumi stack file the way the Pulumi CLI does, passphrase secrets included.

The demo and the tests run the program under mocks with the exact config of
``Pulumi.<stack>.yaml``; this decrypts its ``secure:`` values with the stack's
passphrase (Pulumi's format: PBKDF2-SHA256 with 1,000,000 rounds over the salt
in ``encryptionsalt``, then AES-256-GCM, ``v1:<nonce>:<ciphertext>``), so that a
secret in the example stack is exercised as a secret.

``python -m testbed.stack_file encrypt --stack dev`` encrypts stdin for
that stack, for when the Pulumi CLI is not at hand.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

PBKDF2_ROUNDS = 1_000_000
SENTINEL = "pulumi"  # what Pulumi encrypts into encryptionsalt to check a passphrase
# The example stack's passphrase; published on purpose, it guards no real secret.
EXAMPLE_PASSPHRASE = "consul-backup-example"  # noqa: S105


class StackConfigError(ValueError):
    pass


def _key(passphrase: str, salt: bytes) -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=PBKDF2_ROUNDS)
    return kdf.derive(passphrase.encode())


def _decrypt(key: bytes, value: str) -> str:
    version, nonce, ciphertext = value.split(":")
    if version != "v1":
        raise StackConfigError(f"unknown secret version {version!r}")
    return AESGCM(key).decrypt(base64.b64decode(nonce), base64.b64decode(ciphertext), None).decode()


def _encrypt(key: bytes, plaintext: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), None)
    return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}"


def stack_key(document: dict[str, Any], passphrase: str) -> bytes:
    state = document.get("encryptionsalt")
    if not isinstance(state, str) or not state.startswith("v1:"):
        raise StackConfigError("the stack file has no passphrase encryptionsalt")
    _, salt, sentinel = state.split(":", 2)
    key = _key(passphrase, base64.b64decode(salt))
    try:
        if _decrypt(key, sentinel) != SENTINEL:
            raise StackConfigError("incorrect passphrase")
    except Exception as exc:
        raise StackConfigError("incorrect passphrase for this stack") from exc
    return key


def _reveal(value: Any, key: bytes | None, path: str, secrets: set[str]) -> Any:
    if isinstance(value, dict) and set(value) == {"secure"}:
        if key is None:
            raise StackConfigError(f"{path} is a secret: give the stack's passphrase")
        secrets.add(path.split(".")[0])
        return _decrypt(key, value["secure"])
    if isinstance(value, dict):
        return {k: _reveal(v, key, f"{path}.{k}", secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v, key, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


def load_stack_config(path: Path, passphrase: str | None = None) -> tuple[dict[str, Any], set[str]]:
    """(config by full key, the keys that hold secrets), as the CLI would pass them."""
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    has_secrets = "secure:" in path.read_text()
    passphrase = (
        passphrase if passphrase is not None else os.environ.get("PULUMI_CONFIG_PASSPHRASE")
    )
    key = stack_key(document, passphrase) if has_secrets and passphrase is not None else None
    secrets: set[str] = set()
    values = {name: _reveal(value, key, name, secrets) for name, value in config.items()}
    return values, secrets


def main() -> None:
    parser = argparse.ArgumentParser(description="Encrypt a value for a passphrase stack")
    parser.add_argument("command", choices=["encrypt"])
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args()
    path = Path(f"Pulumi.{args.stack}.yaml")
    document = yaml.safe_load(path.read_text())
    passphrase = os.environ.get("PULUMI_CONFIG_PASSPHRASE", EXAMPLE_PASSPHRASE)
    key = stack_key(document, passphrase)
    print(_encrypt(key, sys.stdin.read().strip()))


if __name__ == "__main__":
    main()
