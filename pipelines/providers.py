"""The providers campaign-sync knows: their dlt source and the settings they need."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dlt

from sources.constant_contact_v2 import constant_contact_v2_source
from sources.constant_contact_v3 import constant_contact_v3_source
from sources.emailoctopus import emailoctopus_source
from sources.errors import setting_name

# the settings every provider has that the pipeline reads after the load (not its source), with their defaults
PIPELINE_SETTINGS = {"forget_deleted_contacts": True}


@dataclass(frozen=True)
class Provider:
    """A provider's name, its dlt source function and its required secrets."""

    name: str
    source: Callable[..., Any]
    secrets: tuple[str, ...]

    @property
    def pipeline_name(self) -> str:
        return f"campaign_sync_{self.name}"

    def setting(self, key: str) -> str:
        """The environment variable name of one of this provider's settings."""
        return setting_name(self.name, key)

    def configured(self, key: str) -> Any:
        """A setting's value: as configured (environment, `.dlt/config.toml`), else its one declared
        default (the source function's parameter, or `PIPELINE_SETTINGS`)."""
        if key in PIPELINE_SETTINGS:
            default = PIPELINE_SETTINGS[key]
        else:
            default = inspect.signature(getattr(self.source, "__wrapped__", self.source)).parameters[key].default
        value = dlt.config.get(f"sources.{self.name}.{key}", type(default))
        return default if value is None else value

    def forgets_deleted_contacts(self) -> bool:
        """`FORGET_DELETED_CONTACTS`: erase the personal data of contacts deleted at the provider."""
        return bool(self.configured("forget_deleted_contacts"))

    def missing_secrets(self) -> list[str]:
        """The settings of this provider's secrets that are set nowhere dlt looks."""
        return [self.setting(key) for key in self.secrets if not dlt.secrets.get(f"sources.{self.name}.{key}")]


PROVIDERS = {
    provider.name: provider
    for provider in (
        Provider("emailoctopus", emailoctopus_source, ("api_key",)),
        Provider("constant_contact_v2", constant_contact_v2_source, ("api_key", "access_token")),
        Provider("constant_contact_v3", constant_contact_v3_source, ("client_id", "client_secret", "refresh_token")),
    )
}
