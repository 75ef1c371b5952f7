"""Erasure: a person deleted at the provider, or who asks us, is forgotten in every table.

Their rows stay (events keyed by `contact_id`, so counts and rates do not change), but every
personal field is emptied: all columns but `sources.erasure.KEPT_AFTER_ERASURE` (a clicked URL
keeps only its path), in every table of the dataset and of dlt's staging dataset that has
`provider` and `contact_id`, and the child rows of their contacts (tags, list memberships) are
deleted. The `erasures` table records who (provider, account, contact_id), why and when, never an
address; `erasure_requests` holds the keyed hash of each address asked to be forgotten, and
`erasure_key_check` a keyed fingerprint of the key they were made with, so a run or `forget` with
another key is refused rather than letting a forgotten address through unrecognised.

Who is forgotten: every contact erased on request, and every contact erased as deleted at the
provider while the provider still has it deleted (one it restores loads again). After each load
the erasure looks again (`forget_after_load`): for the people forgotten since the run's reads began
(the reads left the others out), and for everyone when the run loaded a package an earlier run
read (extracted before an erasure).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import dlt
import pendulum

from pipelines.reconcile import table_columns
from sources.canonical import OWNER, OWNER_FILTER
from sources.erasure import KEPT_AFTER_ERASURE, Forgotten, address_hash, normalized_address
from sources.errors import ConfigurationError
from sources.redaction import register_secret

ERASURES = "erasures"
ERASURE_REQUESTS = "erasure_requests"
KEY_CHECK = "erasure_key_check"
# what the key's fingerprint is the keyed hash of
KEY_CHECK_TEXT = "campaign-sync erasure key check"
DELETED_AT_PROVIDER = "deleted at provider"
REQUEST = "request"
KEY_SETTING = "CAMPAIGN_SYNC__ERASURE_KEY"
_CHUNK = 500  # values per statement
# contact ids per UPDATE of an erasure: each UPDATE scans its table (no index on contact_id), so a backfill
# that finds thousands of contacts deleted scans each table a few times, not once per 500 of them
_ERASED_IDS_PER_UPDATE = 10_000


def erasure_key() -> str:
    """The secret key of the address hashes (`CAMPAIGN_SYNC__ERASURE_KEY`)."""
    key: str | None = dlt.secrets.get("campaign_sync.erasure_key")
    if not key:
        raise ConfigurationError(
            f"missing setting {KEY_SETTING}: the secret key that hashes the addresses of erasure requests "
            "(any long random text; keep it, every later run needs the same one)"
        )
    register_secret(str(key), sent_to_providers=False)
    return str(key)


def forgotten(client: Any, provider: str, account: str) -> Forgotten:
    """Whose personal data a run of `provider`'s `account` must not load, as the dataset records it."""
    if ERASURES not in table_columns(client, client.dataset_name):
        return Forgotten()
    sql, params = _forgotten_ids(client, True, provider, account)
    rows = client.execute_sql(sql, *params)
    hashes = client.execute_sql(f"SELECT address_hash FROM {_name(client, ERASURE_REQUESTS)}")
    return Forgotten(
        contact_ids=frozenset(contact_id for contact_id, reason in rows if reason == REQUEST),
        deleted_ids=frozenset(contact_id for contact_id, reason in rows if reason == DELETED_AT_PROVIDER),
        address_hashes=frozenset(row[0] for row in hashes),
        key=checked_key(client) if hashes else "",
    )


def checked_key(client: Any) -> str:
    """The erasure key, refused (naming its setting) when the dataset's requests were made with another."""
    key = erasure_key()
    if KEY_CHECK in table_columns(client, client.dataset_name):
        recorded = {row[0] for row in client.execute_sql(f"SELECT fingerprint FROM {_name(client, KEY_CHECK)}")}
        if recorded and address_hash(KEY_CHECK_TEXT, key) not in recorded:
            raise ConfigurationError(
                f"{KEY_SETTING} is not the key the erasure requests of dataset {client.dataset_name!r} were made "
                "with: set that key again (under another, a forgotten address would not be recognised)"
            )
    return key


def forget_after_load(
    client: Any, provider: str, account: str, forget_deleted: bool, before: Forgotten | None = None
) -> None:
    """After a load of `provider`'s `account`: record the contacts it reports deleted (if `forget_deleted`) and
    those whose address was asked to be forgotten, then empty the personal data of everyone forgotten.

    `before`: whom the run's reads left out already (its `SyncPlan.forgotten`): the rows it loaded hold
    nothing of theirs and what was loaded before was erased then, so only the people forgotten since
    are looked for, by their contact ids; None (the run loaded packages an earlier run read): everyone.
    """
    tables = table_columns(client, client.dataset_name)
    if not forget_deleted and ERASURES not in tables:
        return
    _create_tables(client)
    now = pendulum.now("UTC")
    if forget_deleted and "deleted" in tables.get("contacts", []):
        client.execute_sql(
            f"INSERT INTO {_name(client, ERASURES)} (provider, account, contact_id, reason, erased_at) "
            f"SELECT DISTINCT provider, account, contact_id, %s, %s FROM {_name(client, 'contacts')} "
            f"WHERE {OWNER_FILTER} AND deleted AND contact_id NOT IN "
            f"(SELECT contact_id FROM {_name(client, ERASURES)} WHERE {OWNER_FILTER})",
            DELETED_AT_PROVIDER, now, provider, account, provider, account,
        )
    hashes = {row[0] for row in client.execute_sql(f"SELECT address_hash FROM {_name(client, ERASURE_REQUESTS)}")}
    if hashes and (before is None or not hashes <= before.address_hashes):  # a request the reads did not know
        key = checked_key(client)
        addresses = set()
        for table, columns in tables.items():
            if {*OWNER, "email_address"} <= set(columns):
                addresses |= {row[0] for row in client.execute_sql(
                    f"SELECT DISTINCT email_address FROM {_name(client, table)} "
                    f"WHERE {OWNER_FILTER} AND email_address IS NOT NULL",
                    provider, account,
                )}
        asked = sorted({normalized_address(a) for a in addresses if address_hash(a, key) in hashes})
        if asked:
            _forget_addresses_of(client, asked, now, (provider, account))
    _erase_forgotten(client, provider, account, None if before is None else before.contact_ids | before.deleted_ids)


def forget_addresses(client: Any, addresses: Iterable[str]) -> list[tuple[str, str, str]]:
    """Forget everyone with one of `addresses` in every provider and account now, and keep them out of
    later loads. Returns the (provider, account, contact_id) erased.
    """
    if not client.has_dataset():
        client.create_dataset()
    _create_tables(client)
    key = checked_key(client)
    client.execute_sql(
        f"INSERT INTO {_name(client, KEY_CHECK)} (fingerprint) SELECT %s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {_name(client, KEY_CHECK)})",
        address_hash(KEY_CHECK_TEXT, key),
    )
    now = pendulum.now("UTC")
    asked = sorted({normalized_address(address) for address in addresses})
    # all or nothing: a request recorded is one whose data is erased (later runs take it as done)
    with client.begin_transaction():
        for address in asked:
            hashed = address_hash(address, key)
            client.execute_sql(
                f"INSERT INTO {_name(client, ERASURE_REQUESTS)} (address_hash, requested_at) SELECT %s, %s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {_name(client, ERASURE_REQUESTS)} WHERE address_hash = %s)",
                hashed, now, hashed,
            )
        found = _forget_addresses_of(client, asked, now)
        for provider, account in sorted({(provider, account) for provider, account, _ in found}):
            _erase_forgotten(client, provider, account)
    return found


def erasure_count(client: Any, provider: str, account: str) -> int:
    """How many contacts of `provider`'s `account` the dataset records as erased."""
    if ERASURES not in table_columns(client, client.dataset_name):
        return 0
    sql = f"SELECT count(DISTINCT contact_id) FROM {_name(client, ERASURES)} WHERE {OWNER_FILTER}"  # a row per reason
    return int(client.execute_sql(sql, provider, account)[0][0])


def _forget_addresses_of(
    client: Any, addresses: list[str], now: datetime, owner: tuple[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """Record as erased on request the contacts with these (normalized) addresses (of one provider's
    account, or of all), and empty the personal fields of the rows that carry one of them without a
    contact id. Returns the contacts found."""
    found: set[tuple[str, str, str]] = set()
    for chunk in _chunks(addresses):
        marks = ", ".join(["%s"] * len(chunk))
        for schema in (client.dataset_name, f"{client.dataset_name}_staging"):
            for table, columns in table_columns(client, schema).items():
                if table == ERASURES or not {*OWNER, "email_address"} <= set(columns):
                    continue
                where = f"lower(trim(email_address)) IN ({marks})"
                params: list[Any] = list(chunk)
                if owner is not None:
                    where, params = f"{OWNER_FILTER} AND {where}", [*owner, *chunk]
                if schema == client.dataset_name and "contact_id" in columns:
                    found |= set(client.execute_sql(
                        f"SELECT DISTINCT provider, account, contact_id FROM {_qualified(schema, table)} "
                        f"WHERE {where} AND contact_id IS NOT NULL",
                        *params,
                    ))
                assignments = _assignments(columns)
                if assignments:
                    client.execute_sql(f"UPDATE {_qualified(schema, table)} SET {assignments} WHERE {where}", *params)
    recorded = {tuple(row) for row in client.execute_sql(
        f"SELECT provider, account, contact_id FROM {_name(client, ERASURES)} WHERE reason = %s", REQUEST
    )}
    new = sorted(found - recorded)
    for batch in _chunks(new):
        values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(batch))
        params = [value for erased in batch for value in (*erased, REQUEST, now)]
        client.execute_sql(
            f"INSERT INTO {_name(client, ERASURES)} (provider, account, contact_id, reason, erased_at) VALUES {values}",
            *params,
        )
    return sorted(found)


def _erase_forgotten(client: Any, provider: str, account: str, erased_before: frozenset[str] | None = None) -> None:
    """Empty the personal fields of everyone forgotten of `provider`'s `account`, in every table (staging
    included): only rows that still hold some are written. `erased_before`: the contacts whose rows were
    erased already (they are left alone); None: everyone's rows are looked at."""
    forgotten_ids, forgotten_params = _forgotten_ids(client, False, provider, account)
    if erased_before is None:
        groups = [(f"SELECT contact_id FROM ({forgotten_ids}) AS forgotten", forgotten_params)]
    else:
        ids = sorted({row[0] for row in client.execute_sql(forgotten_ids, *forgotten_params)} - erased_before)
        groups = [(", ".join(["%s"] * len(chunk)), chunk) for chunk in _chunks(ids, _ERASED_IDS_PER_UPDATE)]
    for schema in (client.dataset_name, f"{client.dataset_name}_staging"):
        tables = table_columns(client, schema) if groups else {}
        for contact_ids, params in groups:
            if "contacts" in tables:  # their tags and list memberships go with them
                erased_contacts = (
                    f"SELECT _dlt_id FROM {_qualified(schema, 'contacts')} "
                    f"WHERE {OWNER_FILTER} AND contact_id IN ({contact_ids})"
                )
                for child, columns in tables.items():
                    if child.startswith("contacts__") and "_dlt_root_id" in columns:
                        client.execute_sql(
                            f"DELETE FROM {_qualified(schema, child)} WHERE _dlt_root_id IN ({erased_contacts})",
                            provider, account, *params,
                        )
            for table, columns in tables.items():
                assignments = _assignments(columns)
                if table == ERASURES or not {*OWNER, "contact_id"} <= set(columns) or not assignments:
                    continue
                personal = [c for c in columns if c not in KEPT_AFTER_ERASURE and not c.startswith("_dlt_")]
                holding = " OR ".join([f'"{column}" IS NOT NULL' for column in personal] + _url_with_query(columns))
                client.execute_sql(
                    f"UPDATE {_qualified(schema, table)} SET {assignments} "
                    f"WHERE {OWNER_FILTER} AND contact_id IN ({contact_ids}) AND ({holding})",
                    provider, account, *params,
                )


def _chunks(values: list[Any], size: int = _CHUNK) -> list[list[Any]]:
    return [values[start:start + size] for start in range(0, len(values), size)]


def _forgotten_ids(client: Any, with_reason: bool, provider: str, account: str) -> tuple[str, list[str]]:
    """The query of the contacts of `provider`'s `account` that are forgotten, and its parameters: erased
    on request, or erased as deleted at the provider while their contacts row still says deleted."""
    erasures, contacts = _name(client, ERASURES), _name(client, "contacts")
    kept, still_deleted, params = "", "TRUE", []
    if "deleted" in table_columns(client, client.dataset_name).get("contacts", []):
        # the contacts not deleted, joined in one hash: under the OR, a NOT IN looks each erasure up in the
        # subquery's rows one by one once they outgrow work_mem (46 s at 193,000 contacts), and a NOT EXISTS
        # runs once per erasure
        kept = (
            f" LEFT JOIN (SELECT contact_id FROM {contacts} WHERE provider = %s AND account = %s AND NOT deleted) "
            "AS kept ON kept.contact_id = e.contact_id"
        )
        still_deleted, params = "kept.contact_id IS NULL", [provider, account]
    reason = ", e.reason" if with_reason else ""
    sql = (
        f"SELECT DISTINCT e.contact_id{reason} FROM {erasures} e{kept} WHERE e.provider = %s AND e.account = %s "
        f"AND (e.reason = '{REQUEST}' OR {still_deleted})"
    )
    return sql, [*params, provider, account]


def _assignments(columns: list[str]) -> str:
    """`SET` of the personal columns: NULL, and a clicked URL cut to its path (a query may carry the address)."""
    personal = [c for c in columns if c not in KEPT_AFTER_ERASURE and not c.startswith("_dlt_")]
    sets = [f'"{column}" = NULL' for column in personal]
    if "url" in columns:
        sets.append("\"url\" = split_part(\"url\", '?', 1)")
    return ", ".join(sets) if personal else ""


def _url_with_query(columns: list[str]) -> list[str]:
    return ["\"url\" LIKE '%%?%%'"] if "url" in columns else []


def _create_tables(client: Any) -> None:
    client.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {_name(client, ERASURES)} (provider VARCHAR NOT NULL, account VARCHAR NOT NULL, "
        "contact_id VARCHAR NOT NULL, reason VARCHAR NOT NULL, erased_at TIMESTAMP WITH TIME ZONE NOT NULL)"
    )
    client.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {_name(client, ERASURE_REQUESTS)} "
        "(address_hash VARCHAR NOT NULL, requested_at TIMESTAMP WITH TIME ZONE NOT NULL)"
    )
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {_name(client, KEY_CHECK)} (fingerprint VARCHAR NOT NULL)")


def _qualified(schema: str, table: str) -> str:
    return f'"{schema}"."{table}"'


def _name(client: Any, table: str) -> str:
    return _qualified(client.dataset_name, table)
