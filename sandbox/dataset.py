"""The sandbox's seeded, deterministic data: contacts, campaigns and their events.

Everything is generated up front from the seed, including events and campaigns dated after
the sandbox clock. Advancing the clock reveals them, so incremental runs have news to find.
Each provider's API renders this data in its own shapes and id styles; the same object is
the ground truth that tests and benchmarks compare the loaded tables with.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SCALES = {
    # campaigns, contacts
    "tiny": (5, 40),
    "small": (8, 150),
    "medium": (30, 2_000),
    "large": (60, 20_000),
}
CUSTOM_FIELDS = ("FirstName", "LastName", "Birthday", "City", "Score")
TAGS = ("vip", "newsletter", "trial", "customer", "event-2025")
DEVICES = ("computer", "mobile", "tablet", "other")
BOUNCE_CODES = ("B", "D", "F", "S", "V", "X", "Z")
OPT_OUT_REASONS = ("Too many emails", "Not relevant", None)
LINKS = ("https://example.com/offer", "https://example.com/blog", "https://example.com/shop?ref=mail")


@dataclass
class Contact:
    id: str
    number: int
    email: str
    fields: dict[str, object]
    tags: list[str]
    status: str
    created_at: datetime
    updated_at: datetime | None
    deleted: bool
    list_id: str


@dataclass(slots=True)  # millions of them at the benchmarks' 10M-event scale
class Event:
    campaign_id: str
    contact_id: str
    type: str  # canonical activity_type
    at: datetime
    url: str | None = None
    bounce_code: str | None = None
    device: str | None = None
    reason: str | None = None
    timestamp_missing: bool = False


@dataclass
class Campaign:
    id: str
    number: int
    name: str
    subject: str
    from_name: str
    from_email: str
    list_id: str
    created_at: datetime
    send_at: datetime | None  # None: a draft that is never sent
    deleted: bool = False
    events: list[Event] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)


@dataclass
class Dataset:
    """One provider account's data, and the clock that says what is visible."""

    seed: int
    clock: datetime
    contacts: list[Contact]
    campaigns: list[Campaign]
    lists: list[str]

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward: later events and campaigns become visible."""
        self.clock += delta
        self._visible.clear()
        self.changes += 1

    def is_sent(self, campaign: Campaign) -> bool:
        return campaign.send_at is not None and campaign.send_at <= self.clock

    def sent_campaigns(self) -> list[Campaign]:
        return [c for c in self.campaigns if self.is_sent(c)]

    def events(self, campaign: Campaign, activity_type: str | None = None) -> list[Event]:
        """The events of a campaign visible now, optionally of one type."""
        if not self.is_sent(campaign):
            return []
        key = (campaign.id, activity_type)
        if key not in self._visible:  # every page of a report asks again: response from memory
            self._visible[key] = [
                e for e in campaign.events if e.at <= self.clock and (activity_type in (None, e.type))
            ]
        return self._visible[key]

    def not_engaged(self, campaign: Campaign, activity_type: str) -> list[str]:
        """Recipients (not bounced) with no visible event of `activity_type`: a snapshot."""
        if not self.is_sent(campaign):
            return []
        key = (campaign.id, f"not {activity_type}")
        if key not in self._visible:
            engaged = {e.contact_id for e in self.events(campaign) if e.type in (activity_type, "bounced")}
            self._visible[key] = [c for c in campaign.recipients if c not in engaged]
        return self._visible[key]

    def contact(self, contact_id: str) -> Contact:
        return self._by_id[contact_id]

    def __post_init__(self) -> None:
        self._by_id = {c.id: c for c in self.contacts}
        self._visible: dict[tuple[str, str | None], list[Any]] = {}
        # how often what is visible was worked out again (`advance`, a zero one after an event was added):
        # what an API keeps worked out from it is stale once this moves
        self.changes = 0


def generate(seed: int, scale: str | tuple[int, int] = "small", clock: datetime | None = None) -> Dataset:
    """Generate the data set for `seed` at `scale`, around `clock` (default: now, whole seconds)."""
    n_campaigns, n_contacts = SCALES[scale] if isinstance(scale, str) else scale
    rng = random.Random(seed)
    now = (clock or datetime.now(UTC)).replace(microsecond=0)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    lists = [new_id(), new_id()]
    contacts = [_contact(rng, new_id(), i, now, lists[i % 2]) for i in range(n_contacts)]
    campaigns = []
    for i in range(n_campaigns):
        if i == n_campaigns - 1:
            send_at = None  # a draft
        elif i == n_campaigns - 2:
            send_at = now + timedelta(hours=12)  # sent when the clock advances a day
        else:
            # spread over the last 80 days: the older ones are past a 30-day window
            send_at = now - timedelta(days=80) + timedelta(days=79 * i / max(n_campaigns - 3, 1))
            send_at = send_at.replace(microsecond=0)
        list_id = lists[i % 2]
        campaign = Campaign(
            id=new_id(),
            number=i + 1,
            name=f"Campaign {i + 1}",
            subject=f"News #{i + 1}",
            from_name="Sandbox Sender",
            from_email="sender@example.com",
            list_id=list_id,
            created_at=(send_at or now) - timedelta(days=2),
            send_at=send_at,
        )
        if send_at is not None:
            recipients = [c for c in contacts if c.list_id == list_id and c.status == "SUBSCRIBED" and not c.deleted]
            campaign.recipients = [c.id for c in recipients]
            campaign.events = _events(rng, campaign, send_at, legacy=(i == 0))
        campaigns.append(campaign)
    return Dataset(seed=seed, clock=now, contacts=contacts, campaigns=campaigns, lists=lists)


def _contact(rng: random.Random, contact_id: str, i: int, now: datetime, list_id: str) -> Contact:
    deleted = rng.random() < 0.03
    fields: dict[str, object] = {}
    for name in CUSTOM_FIELDS:
        if rng.random() < 0.5:
            fields[name] = rng.randint(1, 100) if name == "Score" else f"{name.lower()}-{i}"
    created = now - timedelta(days=200, seconds=rng.randint(0, 86_400 * 100))
    return Contact(
        id=contact_id,
        number=i + 1,
        email=f"contact{i + 1}@example.org",
        fields=fields,
        tags=sorted(rng.sample(TAGS, rng.randint(0, 3))),
        status=rng.choices(("SUBSCRIBED", "UNSUBSCRIBED", "PENDING"), (90, 7, 3))[0],
        created_at=created,
        updated_at=None if rng.random() < 0.2 else created + timedelta(days=rng.randint(1, 50)),
        deleted=deleted,
        list_id=list_id,
    )


def _after(rng: random.Random, start: datetime, mean_hours: float) -> datetime:
    hours = min(rng.expovariate(1 / mean_hours), 24 * 25)
    return start + timedelta(seconds=int(hours * 3600) + 1)


def _events(rng: random.Random, campaign: Campaign, send_at: datetime, legacy: bool) -> list[Event]:
    events: list[Event] = []

    def add(contact_id: str, activity_type: str, at: datetime, **details: object) -> Event:
        event = Event(campaign.id, contact_id, activity_type, at, **details)  # type: ignore[arg-type]
        # the oldest campaign's events predate timestamps now and then (free-plan webhooks)
        event.timestamp_missing = legacy and rng.random() < 0.1
        events.append(event)
        return event

    for n, contact_id in enumerate(campaign.recipients):
        add(contact_id, "sent", send_at + timedelta(seconds=n // 50))
        if rng.random() < 0.04:
            add(contact_id, "bounced", send_at + timedelta(minutes=5), bounce_code=rng.choice(BOUNCE_CODES))
            continue
        if rng.random() < 0.45:
            first_open = _after(rng, send_at, 30)
            opened_at = first_open
            for _ in range(rng.choice((1, 1, 2, 3))):
                device = rng.choice(DEVICES)
                add(contact_id, "opened", opened_at, device=device)
                if rng.random() < 0.06:  # the same open twice within one timestamp
                    add(contact_id, "opened", opened_at, device=device)
                opened_at = _after(rng, opened_at, 48)
            if rng.random() < 0.35:
                clicked_at = first_open + timedelta(seconds=rng.randint(5, 600))
                for _ in range(rng.choice((1, 1, 2))):
                    add(contact_id, "clicked", clicked_at, url=rng.choice(LINKS), device=rng.choice(DEVICES))
                    clicked_at = _after(rng, clicked_at, 24)
            if rng.random() < 0.03:
                add(contact_id, "forwarded", _after(rng, first_open, 10))
        if rng.random() < 0.02:
            add(contact_id, "unsubscribed", _after(rng, send_at, 40), reason=rng.choice(OPT_OUT_REASONS))
        elif rng.random() < 0.006:
            add(contact_id, "complained", _after(rng, send_at, 40))
    return events
