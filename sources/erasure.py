"""Forgotten people: what campaign-sync keeps of a contact once it has erased them.

A contact deleted at the provider, or a person who asked to be forgotten, keeps only the columns
that identify events and contacts without saying who they are (`KEPT_AFTER_ERASURE`); every other
field of a row that carries their `contact_id` (address, names, custom fields, tags, free text) is
personal data. Loads drop those fields for them (`Forgotten.scrub`); `pipelines.erasure` erases
what was loaded before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# what a forgotten person's rows keep: ids, event types, times and provider codes, never a name or address
KEPT_AFTER_ERASURE = frozenset({
    "provider", "account", "contact_id", "v3_contact_id", "campaign_id", "campaign_activity_id", "activity_id",
    "activity_type", "provider_activity_type", "tracking_activity_type", "occurred_at", "kind", "as_of", "status",
    "deleted", "deleted_at", "created_at", "updated_at", "device_type", "bounce_type", "bounce_code", "url",
    "url_id", "link_id", "list_id", "unsubscribe_source",
})


def normalized_address(address: str) -> str:
    """An email address as campaign-sync compares them: trimmed and lower-cased."""
    return address.strip().lower()


def address_hash(address: str, key: str) -> str:
    """The keyed hash of a normalized address: what an erasure request keeps instead of the address."""
    digest_key = hashlib.sha256(key.encode()).digest()
    return hashlib.blake2b(normalized_address(address).encode(), key=digest_key, digest_size=32).hexdigest()


@dataclass
class Forgotten:
    """Whose personal data a run must not load: the contacts erased on request (`contact_ids`) and
    those erased as deleted at the provider (`deleted_ids`: a contacts row that says it is no longer
    deleted, a restored contact, loads as it is), and the people who asked to be forgotten, by the
    keyed hash of their address."""

    contact_ids: frozenset[str] = frozenset()
    deleted_ids: frozenset[str] = frozenset()
    address_hashes: frozenset[str] = frozenset()
    key: str = field(default="", repr=False)
    _hashes: dict[str, str] = field(default_factory=dict, repr=False)

    def scrub(self, rows: list[dict[str, Any]]) -> None:
        """Empty the personal fields of the rows that belong to a forgotten person, in place (a clicked
        URL keeps only its path: a query may carry the address)."""
        if not self.contact_ids and not self.deleted_ids and not self.address_hashes:
            return
        for row in rows:
            if self._is_forgotten(row):
                for name in row:
                    if name not in KEPT_AFTER_ERASURE:
                        row[name] = None
                if isinstance(row.get("url"), str):
                    row["url"] = row["url"].split("?", 1)[0]

    def _is_forgotten(self, row: dict[str, Any]) -> bool:
        contact_id = row.get("contact_id")
        if contact_id in self.contact_ids or (contact_id in self.deleted_ids and row.get("deleted") is not False):
            return True
        address = row.get("email_address")
        if not self.address_hashes or not isinstance(address, str):
            return False
        if address not in self._hashes:
            self._hashes[address] = address_hash(address, self.key)
        return self._hashes[address] in self.address_hashes
