"""The cross-provider views: `constant_contact_id_xrefs`, `contact_activity_unified` (an event both Constant
Contact APIs delivered counted once), `people` and `person_engagement`, on real DuckDB and PostgreSQL."""

from __future__ import annotations

from conftest import BOTH_DESTINATIONS

# what these tests check depends on the destination's SQL: they run on DuckDB and PostgreSQL
pytestmark = BOTH_DESTINATIONS

V2, V3 = "constant_contact_v2", "constant_contact_v3"


def _insert(harness, table: str, rows: list[dict]) -> None:
    columns = {name for (name,) in harness.query(
        f"SELECT column_name FROM information_schema.columns WHERE table_schema = '{harness.dataset}' "
        f"AND table_name = '{table}'"
    )}
    for number, row in enumerate(rows):
        dlt_columns = {"_dlt_load_id": "test", "_dlt_id": f"{table}-{number}"}
        row = {**row, **{key: value for key, value in dlt_columns.items() if key in columns}}
        columns = ", ".join(row)
        values = ", ".join("NULL" if value is None else f"'{value}'" for value in row.values())
        harness.execute(f"INSERT INTO {table} ({columns}) VALUES ({values})")


def _event(provider: str, activity_id: str, campaign: str, contact: str, at: str, kind: str = "opened") -> dict:
    return {
        "activity_id": activity_id, "provider": provider, "account": "default", "campaign_id": campaign,
        "contact_id": contact, "email_address": "ann@example.com", "activity_type": kind, "occurred_at": at,
    }


def test_unified_activity_and_people(harness):
    for provider in ("emailoctopus", V2, V3):
        assert harness.cli("run", provider) == 0
    # the contact xrefs come with the v2 contacts (include_contact_id=true)
    v2_mapped = harness.count("contacts", f"provider = '{V2}' AND v3_contact_id IS NOT NULL")
    assert v2_mapped > 0
    assert harness.count("constant_contact_id_xrefs", "kind = 'contact'") == v2_mapped
    raw = harness.count("contact_activity")
    raw_unified = harness.count("contact_activity_unified")
    # the v3 run looked up the v2 campaigns loaded before it (the sandbox serves one account to both)
    looked_up = harness.count("constant_contact_id_xrefs", "kind = 'campaign'")
    assert looked_up == harness.count("campaigns", f"provider = '{V2}'")

    # one account through both APIs: v2 campaign 9001 is v3 campaign "c-v3", v2 contact 990077 is "p-v3"
    _insert(harness, "constant_contact_campaign_xrefs", [
        {"provider": V3, "account": "default", "v2_campaign_id": "9001", "v3_campaign_id": "c-v3"},
    ])
    _insert(harness, "contacts", [
        {"provider": V2, "account": "default", "contact_id": "990077", "v3_contact_id": "p-v3",
         "email_address": " Ann@Example.com ", "status": "ACTIVE"},
        {"provider": "emailoctopus", "account": "default", "contact_id": "eo-ann",
         "email_address": "ann@example.com", "status": "UNSUBSCRIBED"},
    ])
    _insert(harness, "contact_activity", [
        # two opens in one minute, delivered by both APIs (v3 per minute, v2 in milliseconds): two events
        _event(V3, "v3-a", "c-v3", "p-v3", "2026-11-02 10:15:00+00"),
        _event(V3, "v3-b", "c-v3", "p-v3", "2026-11-02 10:15:00+00"),
        _event(V2, "v2-a", "9001", "990077", "2026-11-02 10:15:12.345+00"),
        _event(V2, "v2-b", "9001", "990077", "2026-11-02 10:15:40.100+00"),
        # history only v2 has, and a minute only v3 has: each stays
        _event(V2, "v2-c", "9001", "990077", "2026-11-01 09:00:00.500+00"),
        _event(V3, "v3-c", "c-v3", "p-v3", "2026-11-03 11:00:00+00"),
        # a click in the same minute is another event
        _event(V2, "v2-d", "9001", "990077", "2026-11-02 10:15:20.000+00", "clicked"),
    ])
    assert harness.cli("run", "emailoctopus") == 0  # the views are made again after each load

    assert harness.count("constant_contact_id_xrefs", "kind = 'campaign'") == looked_up + 1
    assert harness.count("contact_activity") == raw + 7
    assert harness.count("contact_activity_unified") == raw_unified + 5  # the two v2 copies of the v3 opens left out
    unified = harness.query(
        "SELECT provider, campaign_id, contact_id, activity_type FROM contact_activity_unified "
        "WHERE activity_id IN ('v3-a', 'v3-b', 'v2-a', 'v2-b', 'v2-c', 'v3-c', 'v2-d') ORDER BY activity_id"
    )
    assert unified == [
        (V2, "c-v3", "p-v3", "opened"), (V2, "c-v3", "p-v3", "clicked"),
        (V3, "c-v3", "p-v3", "opened"), (V3, "c-v3", "p-v3", "opened"), (V3, "c-v3", "p-v3", "opened"),
    ]

    # contact_engagement finds the v2 contact under the v3 id its unified rows carry
    assert harness.query(
        f"SELECT status, clicks FROM contact_engagement WHERE provider = '{V2}' AND contact_id = 'p-v3'"
    ) == [("ACTIVE", 1)]

    (person,) = harness.query(
        "SELECT providers, contact_ids FROM people WHERE email_address = 'ann@example.com'"
    )
    assert person[0] == 3
    assert {"emailoctopus/default/eo-ann", f"{V2}/default/990077", f"{V3}/default/p-v3"} <= set(person[1].split(", "))
    (engagement,) = harness.query(
        "SELECT opens, clicks, unsubscribed_in, subscribed_in FROM person_engagement "
        "WHERE email_address = 'ann@example.com'"
    )
    assert engagement == (4, 1, "emailoctopus/default", f"{V2}/default")
    assert harness.count("people") == harness.query(
        "SELECT count(DISTINCT lower(trim(email_address))) FROM (SELECT email_address FROM contacts UNION ALL "
        "SELECT email_address FROM contact_activity WHERE contact_id IS NOT NULL) AS addresses "
        "WHERE trim(coalesce(email_address, '')) <> ''"
    )[0][0]
