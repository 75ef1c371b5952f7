"""Each provider's paging, error and mapping decisions on their own, from responses shaped as
docs/providers/ documents them (the end-to-end tests cover the same code against the sandbox)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests

from sources.canonical.resources import longest_first
from sources.constant_contact_v2 import client as cc2
from sources.constant_contact_v2 import mapping as cc2_mapping
from sources.constant_contact_v3 import client as cc3
from sources.constant_contact_v3 import mapping as cc3_mapping
from sources.emailoctopus import client as eo
from sources.emailoctopus import mapping as eo_mapping
from sources.emailoctopus import mapping_v2 as eo_v2_mapping
from sources.errors import CredentialsRefused, NotFound, ProviderError, QuotaExhausted, UnusableValue


def response(status: int, body: object, url: str = "https://api.example/x?api_key=k") -> requests.Response:
    """A real `requests.Response` holding `body` as JSON."""
    built = requests.Response()
    built.status_code = status
    built._content = json.dumps(body).encode()
    built.url = url
    built.headers["Content-Type"] = "application/json"
    return built


# ---- EmailOctopus (docs/providers/emailoctopus-1.6.md) ----

@pytest.mark.parametrize("paging", [[], {"next": None, "previous": None}])
def test_emailoctopus_last_page_is_either_shape(paging):
    assert eo.next_link({"data": [], "paging": paging}) is None


def test_emailoctopus_next_link_is_followed_verbatim():
    link = "/api/1.6/campaigns?limit=100&page=2&api_key=k"
    assert eo.next_link({"data": [], "paging": {"next": link}}) == link
    with pytest.raises(ProviderError):
        eo.items({"paging": []})


@pytest.mark.parametrize(("status", "code", "error"), [
    (401, "API_KEY_INVALID", CredentialsRefused),
    (403, "UNAUTHORISED", CredentialsRefused),
    (403, "CAMPAIGN_NOT_SENT", NotFound),
    (404, "CAMPAIGN_NOT_FOUND", NotFound),
    (404, "NOT_FOUND", NotFound),
    (400, "INVALID_PARAMETERS", ProviderError),
    (500, "UNKNOWN", ProviderError),
])
def test_emailoctopus_errors_by_code_whatever_the_status(status, code, error):
    with pytest.raises(error) as raised:
        eo.check(response(status, {"error": {"code": code, "message": "m"}}))
    assert "api_key=k" not in str(raised.value)


def test_emailoctopus_rows():
    campaign = eo_mapping.campaign_row({
        "id": "c1", "status": "SENT", "name": "N", "subject": "S", "to": ["l1"],
        "from": {"name": "F", "email_address": "f@example.com"}, "content": {"html": "<p>"},
        "created_at": "2025-01-14T08:55:23+01:00", "sent_at": None,
    })
    assert campaign == {
        "campaign_id": "c1", "status": "SENT", "name": "N", "subject": "S", "from_name": "F",
        "from_email": "f@example.com", "list_ids": ["l1"], "created_at": datetime(2025, 1, 14, 7, 55, 23, tzinfo=UTC),
        "sent_at": None, "updated_at": None,
    }
    [click, bounce] = eo_mapping.activity_rows("clicked", [
        {"contact": {"id": "p1", "email_address": "a@example.org"}, "occurred_at": "2025-01-14T08:55:23+00:00",
         "url": "https://x"},
        {"contact": {"id": "p2", "email_address": None}, "occurred_at": None, "type": "HARD"},
    ])
    assert click["url"] == "https://x" and click["contact_id"] == "p1" and click["activity_type"] == "clicked"
    assert bounce["bounce_type"] == "hard" and bounce["occurred_at"] is None
    nested = {"sent": 10, "bounced": {"soft": 1, "hard": 2}, "opened": {"total": 7, "unique": 5},
              "clicked": {"total": 3, "unique": 2}, "complained": 0, "unsubscribed": 1}
    flat = {"sent": 10, "bounced_soft": 1, "bounced_hard": 2, "opened_total": 7, "opened_unique": 5,
            "clicked_total": 3, "clicked_unique": 2, "complained": 0, "unsubscribed": 1}
    assert eo_mapping.summary_row(nested) == eo_mapping.summary_row(flat)
    assert eo_mapping.summary_row(nested)["delivered"] == 7
    deleted = eo_mapping.contact_row({"id": "p3", "email_address": None, "fields": None, "tags": None,
                                      "status": None, "created_at": None, "deleted": True}, "l1")
    assert deleted["deleted"] is True and "tags" not in deleted and deleted["email_address"] is None


# ---- Constant Contact v2 (docs/providers/constant-contact-v2.md) ----

def test_v2_paging_and_throttling():
    link = "/v2/emailmarketing/campaigns?next=abc=="
    assert cc2.next_link({"meta": {"pagination": {"next_link": link}}, "results": []}) == link
    assert cc2.next_link({"meta": {"pagination": {}}, "results": []}) is None
    with pytest.raises(ProviderError):
        cc2.items({"meta": {}})
    over_qps = [{"error_key": "mashery.not.authorized.over.qps", "error_message": "m"}]
    over_day = [{"error_key": "mashery.not.authorized.over.ratelimit", "error_message": "m"}]
    assert cc2.is_throttled(response(403, over_qps)) and cc2.is_throttled(response(429, over_qps))
    assert not cc2.is_throttled(response(403, over_day)) and not cc2.is_throttled(response(429, over_day))
    for status in (403, 429):
        with pytest.raises(QuotaExhausted):
            cc2.check(response(status, over_day))


def test_v2_errors():
    with pytest.raises(CredentialsRefused) as refused:
        cc2.check(response(401, [{"error_key": "http.status.unauthorized", "error_message": "access token invalid"}]))
    assert cc2.TOKEN_SETTING in str(refused.value)
    with pytest.raises(NotFound):
        cc2.check(response(404, [{"error_key": "http.status.not_found", "error_message": "gone"}]))
    with pytest.raises(ProviderError) as other:  # a 404 that is not the API's (a proxy's) is no "gone"
        cc2.check(response(404, "<html>"))
    assert not isinstance(other.value, NotFound)


def test_v2_rows():
    assert cc2_mapping.campaign_id(1100394165003.0) == "1100394165003"
    links = cc2_mapping.link_urls({"click_through_details": [{"url": "https://x", "url_uid": 77, "click_count": 1}]})
    [click, unsubscribe, bounce, odd] = cc2_mapping.activity_rows("clicks", links, [
        {"activity_type": "EMAIL_CLICK", "campaign_id": 5, "contact_id": 9, "email_address": "a@example.org",
         "click_date": "2012-12-06T13:06:35.661Z", "link_id": 77},
        {"activity_type": "EMAIL_UNSUBSCRIBE", "contact_id": "9", "unsubscribe_date": "2012-12-06T13:06:35.661Z",
         "unsubscribe_reason": "too many", "unsubscribe_source": "ACTION_BY_CONTACT"},
        {"activity_type": "EMAIL_BOUNCE", "contact_id": "9", "bounce_date": "2012-12-06T13:06:35.661Z",
         "bounce_code": "F"},
        {"activity_type": "EMAIL_GLANCE", "contact_id": "9", "click_date": "2012-12-06T13:06:35.661Z"},
    ])
    assert (click["activity_type"], click["contact_id"], click["url"], click["link_id"]) == (
        "clicked", "9", "https://x", "77")
    assert click["occurred_at"] == datetime(2012, 12, 6, 13, 6, 35, 661000, tzinfo=UTC)
    assert "campaign_id" not in click  # the read's own id is set instead
    assert (unsubscribe["activity_type"], unsubscribe["reason"]) == ("unsubscribed", "too many")
    assert bounce["bounce_type"] == "soft"
    assert (odd["activity_type"], odd["provider_activity_type"]) == ("clicked", "EMAIL_GLANCE")
    contact = cc2_mapping.contact_row({
        "id": "12", "contact_id": "6bd1de0c-ca53-4df9-adc7-32950c7a03ca", "status": "REMOVED",
        "first_name": "A", "email_addresses": [{"id": "e1", "email_address": "a@example.org", "status": "REMOVED",
                                                "opt_in_source": "ACTION_BY_OWNER"}],
        "lists": [{"id": "1", "status": "REMOVED"}],
        "custom_fields": [{"name": "CustomField1", "label": "City", "value": "Oslo"},
                          {"name": "CustomField2", "label": None, "value": "x"}],
        "created_date": "2012-12-06T13:06:35.661Z", "modified_date": "2013-01-01T00:00:00.000Z",
    })
    assert contact["contact_id"] == "12" and contact["v3_contact_id"] == "6bd1de0c-ca53-4df9-adc7-32950c7a03ca"
    assert contact["email_address"] == "a@example.org" and contact["deleted"] is True
    assert contact["custom_fields"] == {"City": "Oslo", "CustomField2": "x"}
    assert contact["email"] == {"status": "REMOVED", "opt_in_source": "ACTION_BY_OWNER"}


# ---- Constant Contact v3 (docs/providers/constant-contact-v3.md) ----

def test_v3_paging_and_errors():
    href = "/v3/contacts?cursor=abc"
    assert cc3.next_link({"contacts": [], "_links": {"next": {"href": href}}}) == href
    assert cc3.next_link({"contacts": [], "_links": {"next": None}}) is None
    assert cc3.next_link({"contacts": []}) is None
    assert cc3.items("contacts", {"contacts": None}) == []
    throttled, quota = {"error_key": "throttled"}, {"error_key": "quota_exceeded"}
    assert cc3.is_throttled(response(429, throttled)) and not cc3.is_throttled(response(429, quota))
    with pytest.raises(QuotaExhausted):
        cc3.check(response(429, quota))
    with pytest.raises(CredentialsRefused):
        cc3.check(response(401, {"error_key": "unauthorized", "error_message": "m"}))
    for body in ([{"error_key": "not_found", "error_message": "m"}], {"error_key": "not_found"}):
        with pytest.raises(NotFound):
            cc3.check(response(404, body))


def test_v3_rows():
    [bounce] = cc3_mapping.activity_rows("bounced", [{
        "contact_id": "u1", "campaign_activity_id": "a1", "tracking_activity_type": "em_bounces",
        "email_address": "a@example.org", "created_time": "2025-01-14T08:55:00.000Z", "bounce_code": "B",
        "current_email_address": "b@example.org",
    }])
    assert (bounce["activity_type"], bounce["bounce_type"], bounce["contact_id"]) == ("bounced", "hard", "u1")
    assert "tracking_activity_type" not in bounce and "campaign_activity_id" not in bounce
    summary = cc3_mapping.summary_row({"campaign_id": "c1", "last_sent_date": "2025-01-14T08:55:00.000Z",
                                       "unique_counts": {"sends": "10", "bounces": "2", "opens": "5", "new": "1"}})
    assert (summary["sent"], summary["delivered"], summary["opened_unique"], summary["unique_new"]) == (10, 8, 5, 1)
    contact = cc3_mapping.contact_row(
        {"contact_id": "u1", "email_address": {"address": "a@example.org", "permission_to_send": "explicit"},
         "custom_fields": [{"custom_field_id": "f1", "value": "Oslo"}], "taggings": ["t1"],
         "deleted_at": "2025-01-01", "updated_at": "2025-01-02T00:00:00Z"},
        {"f1": "city"}, {"t1": "vip"},
    )
    assert (contact["email_address"], contact["status"], contact["deleted"]) == ("a@example.org", "explicit", True)
    assert contact["custom_fields"] == {"city": "Oslo"} and contact["tags"] == ["vip"]


def test_v3_campaign_xref_rows_map_what_the_answer_maps_and_mark_the_rest_asked():
    body = {"xrefs": [{"v2_email_campaign_id": 1100394165002, "campaign_id": "c2"}]}  # ids may come as numbers
    rows = cc3_mapping.campaign_xref_rows(["1100394165001", "1100394165002"], body)
    assert rows == [{"v2_campaign_id": "1100394165001", "v3_campaign_id": None},
                    {"v2_campaign_id": "1100394165002", "v3_campaign_id": "c2"}]
    assert cc3_mapping.campaign_xref_rows(["1"], {}) == [{"v2_campaign_id": "1", "v3_campaign_id": None}]



def test_a_page_of_campaigns_starts_every_campaigns_sends_first():
    """`longest_first`: each campaign's first report, then each one's second...; every provider lists
    the sends (a row per recipient, its longest report) first, so the long reads start first."""
    reads = longest_first([["a-sent", "a-opened"], ["b-sent"], [], ["c-sent", "c-opened", "c-clicked"]])
    assert reads == ["a-sent", "b-sent", "c-sent", "a-opened", "c-opened", "c-clicked"]
    firsts = [next(iter(reports)) for reports in (eo_mapping.ACTIVITY_REPORTS, cc2_mapping.ACTIVITY_REPORTS,
                                                  cc3_mapping.ACTIVITY_REPORTS)]
    assert firsts == ["sent", "sends", "sends"]


def test_values_of_the_wrong_shape_map_to_nothing_or_are_set_aside_not_a_crash():
    # each of these ended the provider's whole run with a bare TypeError, AttributeError or OverflowError
    sender_text = {"id": "c1", "from": "shop@example.org", "sent_at": "2026-11-02T10:00:00+00:00"}
    assert eo_mapping.campaign_row(sender_text)["from_email"] is None
    with pytest.raises(UnusableValue, match="contact_id"):  # `outcome.mapped` sets such a row aside, named
        eo_v2_mapping.activity_rows("opened", [{"contact_id": {"obj": 1}, "occurred_at": "2026-11-02T10:00:00Z"}])
    contact = cc3_mapping.contact_row(
        {"contact_id": "k1", "email_address": {"address": "a@x.org"}, "custom_fields": {"not": "a list"},
         "taggings": "t1"}, {}, {})
    assert "custom_fields" not in contact and "tags" not in contact
    summary = cc3_mapping.summary_row({"campaign_id": "c1", "unique_counts": {"sends": float("inf"), "opens": 3}})
    assert summary["sent"] is None and summary["opened_unique"] == 3
