"""The providers campaign-sync knows: their dlt source and the settings they need."""

from __future__ import annotations

import inspect
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import dlt

from sources.canonical import DEFAULT_ACCOUNT, parse_utc
from sources.constant_contact_v2 import constant_contact_v2_source
from sources.constant_contact_v3 import constant_contact_v3_source
from sources.dlt_adapter import ConfigValueCannotBeCoercedException
from sources.emailoctopus import emailoctopus_source
from sources.errors import ConfigurationError, setting_name, wrong_type
from sources.redaction import printable

# the settings every provider has that the pipeline reads after the load (not its source), with their defaults
PIPELINE_SETTINGS = {"forget_deleted_contacts": True}


# what each setting must be, checked once for every account before its source is built: a test of the
# typed value and what the message says it must be
SETTING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "requests_per_second": (lambda v: math.isfinite(v) and v >= 0, "a number, 0 or more (0: unlimited)"),
    "max_concurrency": (lambda v: 1 <= v <= 64, "a whole number from 1 to 64"),
    "attribution_window_days": (lambda v: v >= 0, "a whole number of days, 0 or more"),
    "lookback_minutes": (lambda v: v >= 0, "a whole number of minutes, 0 or more"),
    "start_date": (lambda v: parse_utc(v, quiet=True) is not None, "a date: YYYY-MM-DD or ISO 8601"),
    "api_version": (lambda v: str(v) in ("1.6", "2"), "1.6 or 2 (EmailOctopus' current API)"),
}

# an account name: what a TOML table name and an environment variable both can hold, and short
ACCOUNT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def account_label(provider: str, account: str) -> str:
    """How messages and the report name an account: the provider, and a named account after a slash
    (escaped and shortened: a name that breaks the rule is configuration text, `account_error`)."""
    return provider if account == DEFAULT_ACCOUNT else f"{provider}/{printable(account, 60)}"


@dataclass(frozen=True)
class Provider:
    """A provider's name, its dlt source function and its required secrets, for one of its accounts.

    The `default` account is configured by the provider's own settings (`sources.<provider>`);
    a named account by the table `sources.<provider>.accounts.<account>`, whose settings win over
    the provider's, and whose secrets are never taken from anywhere else.
    """

    name: str
    source: Callable[..., Any]
    secrets: tuple[str, ...]
    account: str = DEFAULT_ACCOUNT

    @property
    def is_default(self) -> bool:
        return self.account == DEFAULT_ACCOUNT

    @property
    def pipeline_name(self) -> str:
        """`campaign_sync_<provider>` for the default account, `campaign_sync_<provider>__<account>` for others."""
        suffix = "" if self.is_default else f"__{self.account}"
        return f"campaign_sync_{self.name}{suffix}"

    @property
    def label(self) -> str:
        """How messages name it: the provider, and a named account after a slash."""
        return account_label(self.name, self.account)

    @property
    def arguments(self) -> str:
        """How the command line names it: the provider, and `--account` for a named account."""
        return self.name if self.is_default else f"{self.name} --account {self.account}"

    @property
    def section(self) -> str:
        """Where the account's settings live."""
        return f"sources.{self.name}" if self.is_default else f"sources.{self.name}.accounts.{self.account}"

    def for_account(self, account: str) -> Provider:
        """The same provider, for `account` (a name that breaks the rule is refused: `account_error`)."""
        named = replace(self, account=account)
        error = named.account_error()
        if error is not None:
            raise error
        return named

    def account_error(self) -> ConfigurationError | None:
        """What is wrong with the account's name (None: nothing): a named account cannot run without a
        name that a pipeline, a file and an environment variable can all hold."""
        if self.is_default or ACCOUNT_NAME.match(self.account):
            return None
        return ConfigurationError(
            f"{self.label}: account name: use up to 40 lower-case letters, digits and _, starting with a letter"
        )

    def accounts(self) -> list[Provider]:
        """Every account configured for this provider: the default one when its secrets are set
        (or some are: a mistake to report), then the named ones, in name order (a name that breaks the
        rule too: that account's run reports it, `account_error`, and the others run)."""
        named = set()
        for settings in (dlt.config, dlt.secrets):
            table: Any = settings.get(f"sources.{self.name}.accounts")
            if isinstance(table, Mapping):
                named |= {str(name) for name in table}
        prefix = setting_name(self.name, "accounts") + "__"
        named |= {key[len(prefix):].split("__")[0].lower() for key in os.environ if key.startswith(prefix)}
        named.discard(DEFAULT_ACCOUNT)
        default = [self] if len(self.missing_secrets()) < len(self.secrets) else []
        return default + [replace(self, account=name) for name in sorted(named)]

    def setting(self, key: str) -> str:
        """The environment variable name of one of this account's settings."""
        return setting_name(self.name, key, None if self.is_default else self.account)

    @property
    def _parameters(self) -> Mapping[str, inspect.Parameter]:
        """The source function's parameters: its settings (and `plan`)."""
        return inspect.signature(self._function).parameters

    @property
    def _function(self) -> Callable[..., Any]:
        return getattr(self.source, "__wrapped__", self.source)

    def _declared(self, key: str) -> tuple[Any, type]:
        """A setting's declared default and type (the source function's parameter, or `PIPELINE_SETTINGS`)."""
        if key in PIPELINE_SETTINGS:
            return PIPELINE_SETTINGS[key], type(PIPELINE_SETTINGS[key])
        hint = typing.get_type_hints(self._function)[key]
        if isinstance(hint, types.UnionType):  # `str | None`: the type that is not None
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        return self._parameters[key].default, hint

    def configured(self, key: str) -> Any:
        """A setting's value, typed and checked: as configured for the account (environment,
        `.dlt/config.toml`), else for the provider, else its one declared default. A value that is
        not of the setting's type, or breaks its rule (`SETTING_RULES`), is a configuration error
        naming the setting."""
        default, hint = self._declared(key)
        for section in dict.fromkeys((self.section, f"sources.{self.name}")):
            setting = setting_name(self.name, key, None if section == f"sources.{self.name}" else self.account)
            try:
                value: Any = dlt.config.get(f"{section}.{key}", hint)
            except ConfigValueCannotBeCoercedException as wrong:  # this setting's, or one of dlt's own
                raise wrong_type(wrong, setting if wrong.field_name == f"{section}.{key}" else None) from None
            if value is not None:
                check, must_be = SETTING_RULES.get(key, (lambda _v: True, ""))
                if not check(value):
                    raise ConfigurationError(f"{setting} must be {must_be}, not {str(value)[:60]!r}")
                return value
        return default

    @property
    def api_version(self) -> str | None:
        """Which of the provider's APIs the account uses (`API_VERSION`), for a provider that has several."""
        return str(self.configured("api_version")) if "api_version" in self._parameters else None

    def forgets_deleted_contacts(self) -> bool:
        """`FORGET_DELETED_CONTACTS`: erase the personal data of contacts deleted at the provider."""
        return bool(self.configured("forget_deleted_contacts"))

    def missing_secrets(self) -> list[str]:
        """The settings of this account's secrets that are set nowhere dlt looks."""
        return [self.setting(key) for key in self.secrets if not dlt.secrets.get(f"{self.section}.{key}")]

    def source_arguments(self) -> dict[str, Any]:
        """What the account's source is called with: every setting, read, typed and checked the same
        way for every account (`configured`), and a named account's secrets (the default account's
        dlt injects, naming what is missing)."""
        if not self.is_default and (missing := self.missing_secrets()):
            raise ConfigurationError(f"{self.label}: missing setting {', '.join(missing)}")
        arguments: dict[str, Any] = {}
        for key in [*self._parameters, *PIPELINE_SETTINGS]:
            if key == "plan":
                continue
            if key in self.secrets:
                if not self.is_default:
                    arguments[key] = dlt.secrets.get(f"{self.section}.{key}")
                continue
            value = self.configured(key)
            if key in self._parameters:
                arguments[key] = value
        return arguments


PROVIDERS = {
    provider.name: provider
    for provider in (
        Provider("emailoctopus", emailoctopus_source, ("api_key",)),
        Provider("constant_contact_v2", constant_contact_v2_source, ("api_key", "access_token")),
        Provider("constant_contact_v3", constant_contact_v3_source, ("client_id", "client_secret", "refresh_token")),
    )
}
