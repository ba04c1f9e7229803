"""Console hardening: token strength by entropy, sign-in throttled per address, ids and dates
out of their domain give a page, not a 500."""

from __future__ import annotations

import pytest

from copines.admin.auth import LoginThrottle, check_admin_token, token_bits
from copines.errors import ConfigError
from tests.admin.conftest import TOKEN, sign_in
from tests.conftest import make_settings


@pytest.mark.parametrize(
    "token", ["a" * 16, "a" * 64, "abababababababababab", "0123456789abcdef", "Passw0rd!Passw0rd!"]
)
def test_long_but_predictable_tokens_are_weak(tmp_path, token):
    with pytest.raises(ConfigError, match="entropy"):
        check_admin_token(make_settings(tmp_path, admin_token=token), "0.0.0.0")


def test_random_tokens_are_strong(tmp_path):
    import secrets

    for _ in range(20):
        token = secrets.token_urlsafe(32)
        assert token_bits(token) > 150
        check_admin_token(make_settings(tmp_path, admin_token=token), "0.0.0.0")


def test_the_throttle_grows_then_forgets_on_success():
    throttle = LoginThrottle(free=3, max_delay=30)
    for i in range(3):
        assert throttle.wait_for("1.2.3.4", now=100.0 + i) == 0
        throttle.failed("1.2.3.4", now=100.0 + i)
    waits = []
    now = 200.0
    for _ in range(8):
        throttle.failed("1.2.3.4", now=now)
        waits.append(throttle.wait_for("1.2.3.4", now=now))
    assert waits == sorted(waits) and waits[0] >= 0.5 and waits[-1] == 30
    assert throttle.wait_for("5.6.7.8", now=now) == 0  # another address is not slowed
    throttle.succeeded("1.2.3.4")
    assert throttle.wait_for("1.2.3.4", now=now) == 0


async def test_repeated_wrong_sign_ins_are_slowed_down(client):
    statuses = []
    for _ in range(8):
        response = await sign_in(client, "not-the-token")
        statuses.append(response.status_code)
    assert statuses[:3] == [303, 303, 303]  # the first mistakes are free
    assert 429 in statuses
    refused = await sign_in(client, "not-the-token")
    assert refused.status_code == 429 and "Trop d'essais" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    # The right token is refused too while the address waits: no guessing through.
    assert (await sign_in(client, TOKEN)).status_code == 429


@pytest.mark.parametrize("escalation_id", [10**30, 2**63, 0])
async def test_an_escalation_id_out_of_range_is_not_found(admin, escalation_id):
    response = await admin.get(f"/admin/escalations/{escalation_id}")
    assert response.status_code == 404 and "introuvable" in response.text


@pytest.mark.parametrize("path", ["/admin/gaps", "/admin/analytics", "/admin/conversations"])
@pytest.mark.parametrize("since", ["0001-01-01", "9999-12-31"])
async def test_extreme_dates_give_a_page(admin, path, since):
    response = await admin.get(path, params={"since": since, "until": "9999-12-31"})
    assert response.status_code == 200, response.text[:300]
    response = await admin.get(path, params={"since": since, "until": "0001-01-01"})
    assert response.status_code == 200, response.text[:300]
