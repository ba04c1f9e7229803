"""The visitor's address behind n8n: read from X-Copines-Visitor-IP only when the caller is one
of COPINES_N8N_ADDRESSES, so each visitor keeps her own rate limit and nobody picks her own."""

from __future__ import annotations

import httpx
import pytest

LIMITED = {"rate_per_minute": 2, "rate_per_day_ip": 100, "rate_new_conversations_per_hour": 50}


def send(url: str, visitor: str | None) -> int:
    headers = {"X-Copines-Visitor-IP": visitor} if visitor else {}
    body = {"message": "Une question sur Kajabi ?"}
    return httpx.post(f"{url}/api/chat", json=body, headers=headers, timeout=30).status_code


@pytest.mark.parametrize("backend", ["sqlite"])
def test_n8n_forwards_each_visitor_address(serve, api_settings):
    with serve(api_settings(n8n_addresses=["127.0.0.0/8"], **LIMITED)) as server:
        assert [send(server.url, "203.0.113.1") for _ in range(3)] == [200, 200, 429]
        assert send(server.url, "203.0.113.2") == 200  # another visitor, her own allowance
        assert send(server.url, "not-an-address") == 200  # falls back to the caller's address


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_header_is_ignored_from_anyone_else(serve, api_settings):
    with serve(api_settings(n8n_addresses=["192.0.2.10"], **LIMITED)) as server:
        statuses = [send(server.url, f"203.0.113.{i}") for i in range(1, 4)]
        assert statuses == [200, 200, 429]  # one caller, one allowance, whatever it claims


def test_addresses_are_checked_when_settings_load(tmp_path):
    from pydantic import ValidationError

    from tests.conftest import make_settings

    with pytest.raises(ValidationError, match="COPINES_N8N_ADDRESSES"):
        make_settings(tmp_path, n8n_addresses="n8n.internal")
    assert make_settings(tmp_path, n8n_addresses="10.0.0.5, 10.1.0.0/16").n8n_addresses == [
        "10.0.0.5",
        "10.1.0.0/16",
    ]
