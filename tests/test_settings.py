"""The environment contract, read once: the function and the CLI share this loader."""

from __future__ import annotations

from typing import Any

import pytest

from snapshot_backup.environment import EnvVar
from snapshot_backup.settings import SettingsError, load_consul_settings, load_settings
from snapshot_backup.token_source import TokenError

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
        ({EnvVar.CLUSTER_NAME: "Prod"}, "CLUSTER_NAME 'Prod' must be lowercase letters"),
        ({EnvVar.BACKUP_BUCKET: " "}, "BACKUP_BUCKET is required"),
        ({EnvVar.CONSUL_HTTP_ADDR: "ftp://x"}, "CONSUL_HTTP_ADDR: 'ftp://x' is not an http://"),
        ({EnvVar.CONSUL_STALE: "maybe"}, "CONSUL_STALE must be true or false, not 'maybe'"),
        ({EnvVar.CONSUL_RETRIES: "7"}, "CONSUL_RETRIES must be a whole number from 0 to 6"),
        ({EnvVar.CONSUL_READ_TIMEOUT: "soon"}, "CONSUL_READ_TIMEOUT 'soon' is not seconds"),
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
