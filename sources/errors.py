"""Errors that end a sync, each with the exit code the command line reports for it."""

from __future__ import annotations

from sources.dlt_adapter import RUNTIME_SETTINGS, ConfigValueCannotBeCoercedException

# how a setting that cannot be read as its type is described
TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def setting_name(provider: str, key: str, account: str | None = None) -> str:
    """The environment variable of a provider's setting, as dlt reads it (`SOURCES__<PROVIDER>__<KEY>`), or
    of a named account's (`SOURCES__<PROVIDER>__ACCOUNTS__<ACCOUNT>__<KEY>`)."""
    section = provider if account is None else f"{provider}__accounts__{account}"
    return f"SOURCES__{section}__{key}".upper()


def wrong_type(wrong: ConfigValueCannotBeCoercedException, setting: str | None = None) -> ConfigurationError:
    """A setting dlt could not read as its type, named (`setting`, else by where dlt looked: a dotted
    name, or one of dlt's `runtime` settings)."""
    if setting is None:
        sections = wrong.field_name.split(".")
        if len(sections) == 1 and sections[0] in RUNTIME_SETTINGS:
            sections.insert(0, "runtime")
        setting = "__".join(sections).upper()
    must_be = TYPE_NAMES.get(wrong.hint, getattr(wrong.hint, "__name__", str(wrong.hint)))
    return ConfigurationError(f"{setting} must be {must_be}, not {str(wrong.field_value)[:60]!r}")


class CampaignSyncError(Exception):
    """Base of every error campaign-sync reports on one line."""

    exit_code = 1


class ConfigurationError(CampaignSyncError):
    """A setting is missing or wrong, or the command was used wrongly."""

    exit_code = 2


class CredentialsRefused(CampaignSyncError):
    """The provider refused the configured credentials."""

    exit_code = 3

    def __init__(self, provider: str, setting: str, detail: str = "") -> None:
        hint = f" ({detail})" if detail else ""
        super().__init__(f"{provider} refused the credentials{hint}: check {setting}")
        self.provider = provider
        self.setting = setting


class QuotaExhausted(CampaignSyncError):
    """The provider's daily request quota is used up; the run can resume later."""

    exit_code = 4


class RequestCapReached(QuotaExhausted):
    """The run's own request budget (`--max-requests`) is used up; the next run resumes."""


class Interrupted(QuotaExhausted):
    """The run was interrupted (SIGINT, SIGTERM): its reads stop as at a used-up quota, what was read
    loads, and the next run resumes."""

    exit_code = 130

    def __init__(self, message: str = "") -> None:
        super().__init__(message or INTERRUPTED)


INTERRUPTED = "interrupted; what loaded is kept; the next run resumes"


class ProviderError(CampaignSyncError):
    """The provider kept failing, or returned something that is not its API."""

    exit_code = 1


class UnusableValue(ProviderError):
    """A value of the provider's that cannot be what it stands for (an id that is an object): its row
    is set aside, or its read refused."""


class NotFound(ProviderError):
    """What was asked for is not there (a deleted or unsent campaign's report): such a report reads as empty."""
