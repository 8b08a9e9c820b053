"""The environment contract, read once: the function and the CLI share this loader."""

from __future__ import annotations

import json
from typing import Any

import pytest

from snapshot_backup.environment import EnvVar
from snapshot_backup.settings import SettingsError, load_consul_settings, load_settings
from snapshot_backup.token_source import Redactor, TokenError, token_redactor

BASE: dict[str, str] = {
    EnvVar.CLUSTER_NAME: "prod",
    EnvVar.BACKUP_BUCKET: "backups",
    EnvVar.CONSUL_HTTP_ADDR: "consul.internal:8500",
}


class CountingSecrets:
    """A Secrets Manager client that counts its reads."""

    def __init__(self, secret: str = "from-secrets-manager") -> None:  # noqa: S107 - a test value
        self.reads = 0
        self.secret = secret

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.reads += 1
        return {"SecretString": self.secret}


def load(**env: str) -> Any:
    secrets = CountingSecrets()
    return load_settings({**BASE, **env}, lambda: secrets), secrets


def test_defaults_and_a_bare_host_port_meaning_http():
    settings, secrets = load()
    assert settings.consul.address == "http://consul.internal:8500"
    assert settings.prefix == "consul-snapshots/"
    assert (settings.consul.stale, settings.consul.datacenter, settings.consul.token) == (
        False,
        None,
        None,
    )
    assert settings.consul.read_timeout == 300 and len(settings.consul.retry_delays) == 3
    assert secrets.reads == 0


def test_the_token_is_read_from_secrets_manager_once_and_kept_out_of_reprs():
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-AbCdEf"
    settings, secrets = load(CONSUL_TOKEN_SECRET_ARN=arn, CONSUL_HTTP_TOKEN="ignored")
    assert settings.consul.token == "from-secrets-manager"
    assert settings.consul.token_secret_arn == arn
    assert secrets.reads == 1
    assert "from-secrets-manager" not in repr(settings)


def test_a_plain_token_for_local_runs():
    settings, _ = load(CONSUL_HTTP_TOKEN=" local-token ")
    assert settings.consul.token == "local-token"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({EnvVar.CLUSTER_NAME: ""}, "CLUSTER_NAME is required"),
        ({EnvVar.CLUSTER_NAME: "Prod"}, "CLUSTER_NAME: 'Prod' is not a valid cluster name"),
        ({EnvVar.BACKUP_BUCKET: " "}, "BACKUP_BUCKET is required"),
        ({EnvVar.CONSUL_HTTP_ADDR: "ftp://x"}, "CONSUL_HTTP_ADDR: 'ftp://x' is not an http://"),
        ({EnvVar.CONSUL_STALE: "maybe"}, "CONSUL_STALE must be true or false, not 'maybe'"),
        ({EnvVar.CONSUL_RETRIES: "7"}, "CONSUL_RETRIES must be a whole number from 0 to 6"),
        ({EnvVar.CONSUL_READ_TIMEOUT: "soon"}, "CONSUL_READ_TIMEOUT must be seconds from 1"),
        ({EnvVar.CONSUL_READ_TIMEOUT: "nan"}, "CONSUL_READ_TIMEOUT must be seconds .* not 'nan'"),
        ({EnvVar.CONSUL_READ_TIMEOUT: "-5"}, "CONSUL_READ_TIMEOUT must be seconds .* not '-5'"),
        ({EnvVar.CONSUL_RETRIES: "²"}, "CONSUL_RETRIES must be a whole number from 0 to 6"),
        ({EnvVar.KEEP_LATEST: "0"}, "KEEP_LATEST must be a whole number from 1 to 1000"),
        ({EnvVar.CONTENT_DROP_PERCENT: "101"}, "CONTENT_DROP_PERCENT must be a whole number"),
    ],
)
def test_a_wrong_setting_is_named_before_anything_is_read(env: dict[str, str], message):
    secrets = CountingSecrets()
    with pytest.raises(SettingsError, match=message):
        load_settings({**BASE, EnvVar.CONSUL_TOKEN_SECRET_ARN: "arn:x", **env}, lambda: secrets)
    assert secrets.reads == 0


def test_the_consul_part_alone_is_what_the_cli_loads():
    consul = load_consul_settings(
        {EnvVar.CONSUL_HTTP_ADDR: "https://c:8501/", EnvVar.CONSUL_DATACENTER: "dc2"},
        CountingSecrets,
    )
    assert (consul.address, consul.datacenter) == ("https://c:8501", "dc2")


def test_a_secret_without_a_token_is_an_error():
    with pytest.raises(TokenError, match="has no SecretString"):
        load_settings(
            {**BASE, EnvVar.CONSUL_TOKEN_SECRET_ARN: "arn:empty"}, lambda: CountingSecrets("")
        )


# --- a token is checked where it is read, and kept out of every message -----

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-AbCdEf"
UUID = "9f3c2a1e-7b4d-4c1e-9a2f-3d5e6f7a8b9c"


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (
            f"{UUID}\n{UUID}",
            "it has a character an HTTP header cannot carry at position 37 of 73: "
            "a line break (U+000A) (two lines pasted into one value?)",
        ),
        (
            f"{UUID}\r\n{UUID}",
            "it has 2 characters an HTTP header cannot carry, the first at position 37 of 74: "
            "a line break (U+000D)",
        ),
        (f"{UUID}\x00", "at position 37 of 37: a control character (U+0000)"),
        (f"\x7f{UUID}", "at position 1 of 37: a control character (U+007F)"),
        (f"{UUID[:8]}\t{UUID}", "at position 9 of 45: a tab"),
        (f"{UUID[:8]} {UUID}", "at position 9 of 45: a space"),
        (f"\ufeff{UUID}", "at position 1 of 37: a character outside ASCII"),
        (f"{UUID}é", "at position 37 of 37: a character outside ASCII"),
    ],
    ids=["LF", "CRLF", "NUL", "DEL", "tab", "space", "byte-order mark", "é"],
)
@pytest.mark.parametrize("source", ["secret", "env"])
def test_a_token_a_header_cannot_carry_is_refused_where_it_is_read(token, problem, source):
    env: dict[str, str]
    if source == "secret":
        env, named = {EnvVar.CONSUL_TOKEN_SECRET_ARN: ARN}, f"secret {ARN}"
    else:
        env, named = {EnvVar.CONSUL_HTTP_TOKEN: token}, "CONSUL_HTTP_TOKEN"
    with pytest.raises(TokenError) as raised:
        load_settings({**BASE, **env}, lambda: CountingSecrets(token))
    message = str(raised.value)
    assert message.startswith(f"the Consul token in {named} is not a valid HTTP header value")
    assert problem in message
    assert UUID not in message and UUID[:8] not in message


def test_a_refused_token_is_not_kept_and_the_fixed_secret_is_read_next_time():
    secrets = CountingSecrets(f"{UUID}\n{UUID}")
    with pytest.raises(TokenError):
        load_settings({**BASE, EnvVar.CONSUL_TOKEN_SECRET_ARN: ARN}, lambda: secrets)
    secrets.secret = UUID  # the operator fixes the secret
    settings = load_settings({**BASE, EnvVar.CONSUL_TOKEN_SECRET_ARN: ARN}, lambda: secrets)
    assert settings.consul.token == UUID and secrets.reads == 2


def test_whitespace_around_a_token_is_taken_off_before_it_is_checked():
    settings, _ = load(CONSUL_HTTP_TOKEN=f" \t{UUID}\r\n")
    assert settings.consul.token == UUID


def test_every_token_read_is_redacted_even_one_that_was_refused():
    load(CONSUL_HTTP_TOKEN="first-token-value")
    with pytest.raises(TokenError):
        load(CONSUL_HTTP_TOKEN=f"{UUID}\nsecond line")
    text = token_redactor().text(f"sent first-token-value, then {UUID!r}")
    assert "first-token-value" not in text and UUID not in text


@pytest.mark.parametrize(
    ("token", "spelled"),
    [
        (f"{UUID}\nsecond-line-of-it", f"b'{UUID}\\nsecond-line-of-it'"),  # http.client's error
        (f"{UUID}é", json.dumps(f"{UUID}é")),  # a JSON log line
        (f"{UUID}€", f"'latin-1' codec can't encode: {UUID}\\u20ac"),
        (f"{UUID}\x00tail", f"only the first line: {UUID}"),
    ],
    ids=["repr of bytes", "JSON", "ascii()", "one piece"],
)
def test_the_redactor_finds_a_token_however_it_is_spelled(token, spelled):
    redactor = Redactor([token])
    assert redactor.leaks(spelled)
    assert not redactor.leaks(redactor.text(spelled))


def test_the_mask_never_spells_the_token_again():
    # A token made of the usual mask characters: the mask must be another one.
    redactor = Redactor(["***###~~~"])
    assert redactor.mask[0] not in "*#~"
    assert "***###~~~" not in redactor.text("a ***###~~~ b ***###~~~***###~~~")


def test_an_error_is_cleaned_in_place_with_its_notes_and_chain():
    secret = f"{UUID}-secret"
    redactor = Redactor([secret])
    try:
        try:
            raise ValueError(f"inner {secret}")
        except ValueError as inner:
            outer = RuntimeError(f"outer {secret}", secret.encode())
            outer.add_note(f"note {secret}")
            raise outer from inner
    except RuntimeError as exc:
        cleaned = redactor.exception(exc)
    assert cleaned is outer and type(cleaned) is RuntimeError
    texts = [repr(cleaned), *cleaned.__notes__, repr(cleaned.__cause__)]
    assert not any(redactor.leaks(text) for text in texts)
    assert repr(cleaned.__cause__) == f"ValueError('inner {redactor.mask}')"
