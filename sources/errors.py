"""Errors that end a sync, each with the exit code the command line reports for it."""

from __future__ import annotations


def setting_name(provider: str, key: str, account: str | None = None) -> str:
    """The environment variable of a provider's setting, as dlt reads it (`SOURCES__<PROVIDER>__<KEY>`), or
    of a named account's (`SOURCES__<PROVIDER>__ACCOUNTS__<ACCOUNT>__<KEY>`)."""
    section = provider if account is None else f"{provider}__accounts__{account}"
    return f"SOURCES__{section}__{key}".upper()


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


class ProviderError(CampaignSyncError):
    """The provider kept failing, or answered something that is not its API."""

    exit_code = 1


class NotFound(ProviderError):
    """What was asked for is not there (a deleted or unsent campaign's report): such a report reads as empty."""
