"""An AWS provider for another region that is the stack's default provider in all else.

A replica bucket lives in another region, so it needs a provider of its own.
An explicit ``aws.Provider`` does not read the ``aws:*`` stack config that
configures the default provider (only the environment and the shared AWS
files): given ``region`` alone it would deploy the replica with other
credentials than the rest of the stack (no ``aws:profile``, no
``aws:assumeRoles``, other endpoints) or fail. So the replica's provider gets
every setting of the default provider that the stack config holds, each one
``aws.Provider`` accepts, with only the region replaced. A caller that brings
explicit providers passes its own (``replica_provider``) instead.

For a stack deployed before, the provider's inputs gain those settings: an
update of the provider, not a replacement of what it made, since pulumi-aws
asks for a cascading replacement only when the region changes
(pulumi/pulumi-aws#4000, ``ForcesProviderReplace`` on ``region`` alone).
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

import pulumi
import pulumi_aws as aws

from .validation import camel_case

AWS_CONFIG = "aws"
# The Provider's constructor parameters that are not provider settings.
_NOT_SETTINGS = {"__self__", "resource_name", "opts", "__props__", "region"}


@functools.cache
def provider_settings() -> dict[str, bool]:
    """Every setting ``aws.Provider`` takes but ``region``: argument name -> is it plain text?

    Read from the Provider's own signature, so a setting a new pulumi-aws adds
    is inherited without a change here. Plain-text settings come from stack
    config as they are; the others (lists, objects, booleans, numbers) are JSON
    there and are passed decoded, as the Provider encodes them again.
    """
    parameters = inspect.signature(aws.Provider._internal_init).parameters
    return {
        name: str in typing.get_args(parameter.annotation)
        for name, parameter in parameters.items()
        if name not in _NOT_SETTINGS
    }


def default_provider_settings() -> dict[str, Any]:
    """The default provider's settings from the ``aws:*`` stack config, by argument name.

    The config key of each is the argument's camelCase (``shared_credentials_files``
    is ``aws:sharedCredentialsFiles``); a key set with ``--secret`` stays secret.
    """
    config = pulumi.Config(AWS_CONFIG)
    found: dict[str, Any] = {}
    for argument, plain_text in provider_settings().items():
        key = camel_case(argument)
        if pulumi.runtime.is_config_secret(config.full_key(key)):
            value: Any = config.get_secret(key) if plain_text else config.get_secret_object(key)
        else:
            value = config.get(key) if plain_text else config.get_object(key)
        if value is not None:
            found[argument] = value
    return found


def provider_in_region(
    name: str, region: str, opts: pulumi.ResourceOptions | None = None
) -> aws.Provider:
    """The stack's default AWS provider, as configured, in ``region``."""
    return aws.Provider(name, region=region, **default_provider_settings(), opts=opts)
