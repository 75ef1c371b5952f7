"""Erasure: a person deleted at the provider, or who asks us, is forgotten in every table.

Their rows stay (events keyed by `contact_id`, so counts and rates do not change), but every
personal field is emptied: all columns but `sources.erasure.KEPT_AFTER_ERASURE`, in every table
of the dataset and of dlt's staging dataset that has `provider` and `contact_id`, and the child
rows of their contacts (tags, list memberships) are deleted. The `erasures` table records who
(provider, account, contact_id), why and when, never an address; `erasure_requests` holds the
keyed hash of each address asked to be forgotten, so later loads drop those fields too.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import dlt
import pendulum

from sources.erasure import KEPT_AFTER_ERASURE, Forgotten, address_hash, normalized_address
from sources.errors import ConfigurationError

ERASURES = "erasures"
ERASURE_REQUESTS = "erasure_requests"
DELETED_AT_PROVIDER = "deleted at provider"
REQUEST = "request"
DEFAULT_ACCOUNT = "default"
KEY_SETTING = "CAMPAIGN_SYNC__ERASURE_KEY"
_CHUNK = 500  # contact ids per statement


def erasure_key() -> str:
    """The secret key of the address hashes (`CAMPAIGN_SYNC__ERASURE_KEY`)."""
    key = dlt.secrets.get("campaign_sync.erasure_key")
    if not key:
        raise ConfigurationError(
            f"missing setting {KEY_SETTING}: the secret key that hashes the addresses of erasure requests "
            "(any long random text; keep it, every later run needs the same one)"
        )
    return str(key)


def forgotten(client: Any, provider: str) -> Forgotten:
    """Whose personal data a run of `provider` must not load, as the dataset records it."""
    if ERASURES not in _tables(client, client.dataset_name):
        return Forgotten()
    ids = client.execute_sql(f"SELECT contact_id FROM {_name(client, ERASURES)} WHERE provider = %s", provider)
    hashes = client.execute_sql(f"SELECT address_hash FROM {_name(client, ERASURE_REQUESTS)}")
    return Forgotten(
        contact_ids=frozenset(row[0] for row in ids),
        address_hashes=frozenset(row[0] for row in hashes),
        key=erasure_key() if hashes else "",
    )


def erase_deleted_contacts(client: Any, provider: str) -> int:
    """Forget the contacts of `provider` that it reports deleted and that are not erased yet; return how many."""
    if "contacts" not in _tables(client, client.dataset_name):
        return 0
    _create_tables(client)
    if "deleted" not in _tables(client, client.dataset_name)["contacts"]:
        return 0
    found = client.execute_sql(
        f"SELECT contact_id FROM {_name(client, 'contacts')} WHERE provider = %s AND deleted "
        f"AND contact_id NOT IN (SELECT contact_id FROM {_name(client, ERASURES)} WHERE provider = %s)",
        provider,
        provider,
    )
    contact_ids = sorted({row[0] for row in found})
    _erase(client, provider, contact_ids, DELETED_AT_PROVIDER)
    return len(contact_ids)


def forget_addresses(client: Any, addresses: Iterable[str], key: str) -> list[tuple[str, str]]:
    """Forget everyone with one of `addresses` in every provider now, and keep them out of later loads.

    Returns the (provider, contact_id) pairs erased.
    """
    if not client.has_dataset():
        client.create_dataset()
    _create_tables(client)
    tables = _tables(client, client.dataset_name)
    erased: list[tuple[str, str]] = []
    now = pendulum.now("UTC")
    for address in addresses:
        normalized = normalized_address(address)
        found: set[tuple[str, str]] = set()
        for table, columns in tables.items():
            if {"provider", "contact_id", "email_address"} <= set(columns):
                found |= set(client.execute_sql(
                    f"SELECT DISTINCT provider, contact_id FROM {_name(client, table)} "
                    "WHERE lower(trim(email_address)) = %s AND contact_id IS NOT NULL",
                    normalized,
                ))
        for provider in sorted({provider for provider, _ in found}):
            _erase(client, provider, sorted(cid for p, cid in found if p == provider), REQUEST, now)
        erased += sorted(found)
        hashed = address_hash(normalized, key)
        client.execute_sql(
            f"INSERT INTO {_name(client, ERASURE_REQUESTS)} (address_hash, requested_at) "
            f"SELECT %s, %s WHERE NOT EXISTS (SELECT 1 FROM {_name(client, ERASURE_REQUESTS)} WHERE address_hash = %s)",
            hashed,
            now,
            hashed,
        )
    return erased


def erasure_count(client: Any, provider: str) -> int:
    """How many contacts of `provider` the dataset records as erased."""
    if ERASURES not in _tables(client, client.dataset_name):
        return 0
    sql = f"SELECT count(*) FROM {_name(client, ERASURES)} WHERE provider = %s"
    return int(client.execute_sql(sql, provider)[0][0])


def _erase(
    client: Any, provider: str, contact_ids: list[str], reason: str, now: datetime | None = None
) -> None:
    """Empty the personal fields of these contacts in every table (staging included), and record it."""
    if not contact_ids:
        return
    now = now or pendulum.now("UTC")
    for schema in (client.dataset_name, f"{client.dataset_name}_staging"):
        tables = _tables(client, schema)
        for start in range(0, len(contact_ids), _CHUNK):
            chunk = contact_ids[start:start + _CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            if "contacts" in tables:  # their tags and list memberships go with them
                erased_contacts = (
                    f"SELECT _dlt_id FROM {_qualified(schema, 'contacts')} "
                    f"WHERE provider = %s AND contact_id IN ({marks})"
                )
                children = [t for t, cols in tables.items() if t.startswith("contacts__") and "_dlt_root_id" in cols]
                for child in children:
                    client.execute_sql(
                        f"DELETE FROM {_qualified(schema, child)} WHERE _dlt_root_id IN ({erased_contacts})",
                        provider,
                        *chunk,
                    )
            for table, columns in tables.items():
                personal = [c for c in columns if c not in KEPT_AFTER_ERASURE and not c.startswith("_dlt_")]
                if table == ERASURES or not {"provider", "contact_id"} <= set(columns) or not personal:
                    continue
                assignments = ", ".join(f'"{column}" = NULL' for column in personal)
                client.execute_sql(
                    f"UPDATE {_qualified(schema, table)} SET {assignments} "
                    f"WHERE provider = %s AND contact_id IN ({marks})",
                    provider,
                    *chunk,
                )
    for contact_id in contact_ids:
        client.execute_sql(
            f"INSERT INTO {_name(client, ERASURES)} (provider, account, contact_id, reason, erased_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            provider,
            DEFAULT_ACCOUNT,
            contact_id,
            reason,
            now,
        )


def _create_tables(client: Any) -> None:
    client.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {_name(client, ERASURES)} (provider VARCHAR NOT NULL, account VARCHAR NOT NULL, "
        "contact_id VARCHAR NOT NULL, reason VARCHAR NOT NULL, erased_at TIMESTAMP WITH TIME ZONE NOT NULL)"
    )
    client.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {_name(client, ERASURE_REQUESTS)} "
        "(address_hash VARCHAR NOT NULL, requested_at TIMESTAMP WITH TIME ZONE NOT NULL)"
    )


def _tables(client: Any, schema: str) -> dict[str, list[str]]:
    """The base tables (not views) of a schema, with their columns."""
    rows = client.execute_sql(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position",
        schema,
    )
    tables: dict[str, list[str]] = {}
    for table, column in rows or []:
        tables.setdefault(table, []).append(column)
    return tables


def _qualified(schema: str, table: str) -> str:
    return f'"{schema}"."{table}"'


def _name(client: Any, table: str) -> str:
    return _qualified(client.dataset_name, table)
