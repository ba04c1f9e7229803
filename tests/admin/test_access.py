"""Access to the console: the token, the session cookie, CSRF on every form, logout."""

from __future__ import annotations

import time

import httpx
import pytest

from copines.admin.auth import (
    SESSION_COOKIE,
    check_admin_token,
    new_session,
    read_session,
)
from copines.errors import ConfigError
from tests.admin.conftest import TOKEN, csrf_of, seed, sign_in
from tests.conftest import make_settings

PAGES = [
    "/admin/escalations",
    "/admin/conversations",
    "/admin/knowledge",
    "/admin/gaps",
    "/admin/analytics",
]
APIS = ["/admin/api/escalations", "/admin/api/analytics"]


@pytest.mark.parametrize("token", [None, "", "changeme", "admin", "short-token"])
def test_weak_token_refused_on_public_address(tmp_path, token):
    settings = make_settings(tmp_path, admin_token=token)
    with pytest.raises(ConfigError, match="COPINES_ADMIN_TOKEN"):
        check_admin_token(settings, "0.0.0.0")
    check_admin_token(settings, "127.0.0.1")  # local serving stays possible
    check_admin_token(settings, "localhost")


def test_strong_token_accepted_everywhere(tmp_path):
    settings = make_settings(tmp_path, admin_token=TOKEN)
    check_admin_token(settings, "0.0.0.0")
    check_admin_token(settings, "192.168.1.20")


def test_session_signature_and_expiry():
    _, cookie = new_session(TOKEN, now=1000.0)
    assert read_session(TOKEN, cookie, now=1001.0) is not None
    assert read_session("another-token-entirely-xyz", cookie, now=1001.0) is None
    nonce, expires, signature = cookie.split(".")
    assert read_session(TOKEN, f"{nonce}.{int(expires) + 999}.{signature}", now=1001.0) is None
    assert read_session(TOKEN, cookie, now=1000.0 + 9 * 3600) is None  # expired
    assert read_session(TOKEN, "garbage", now=1001.0) is None


@pytest.mark.parametrize("path", PAGES)
async def test_pages_redirect_to_login_without_session(client, path):
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login?next=")


@pytest.mark.parametrize("path", APIS)
async def test_api_refuses_without_session(client, path):
    response = await client.get(path)
    assert response.status_code == 401


async def test_forged_cookie_refused(client):
    client.cookies.set(SESSION_COOKIE, f"abc.{int(time.time()) + 3600}.forged", path="/admin")
    assert (await client.get("/admin/api/escalations")).status_code == 401


async def test_wrong_token_gets_no_session(client):
    response = await sign_in(client, "wrong-token-of-enough-length")
    assert response.status_code == 303
    assert "error=1" in response.headers["location"]
    assert SESSION_COOKIE not in client.cookies
    assert (await client.get("/admin/api/escalations")).status_code == 401


async def test_login_sets_httponly_samesite_cookie(client):
    response = await sign_in(client)
    assert response.status_code == 303
    header = response.headers["set-cookie"].lower()
    assert f"{SESSION_COOKIE}=" in header
    assert "httponly" in header
    assert "samesite=strict" in header
    assert "max-age=" in header
    assert (await client.get("/admin/api/escalations")).status_code == 200


async def test_login_without_csrf_refused(client):
    response = await client.post("/admin/login", data={"token": TOKEN})
    assert response.status_code == 403
    assert SESSION_COOKIE not in client.cookies


async def test_login_redirects_to_next_but_never_offsite(client):
    page = await client.get("/admin/login", params={"next": "https://evil.example/"})
    assert 'value="/admin/escalations"' in page.text
    page = await client.get("/admin/login", params={"next": "/admin/analytics"})
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    response = await client.post(
        "/admin/login", data={"token": TOKEN, "csrf_token": csrf, "next": "/admin/analytics"}
    )
    assert response.headers["location"] == "/admin/analytics"


async def test_every_form_needs_csrf(admin, admin_deps):
    seeded = await seed(admin_deps)
    escalation = seeded.escalations["compta"]
    conversation = seeded.conversations["compta"]
    forms = [
        (f"/admin/escalations/{escalation}/status", {"status": "handled"}),
        (f"/admin/conversations/{conversation}/reply", {"content": "Bonjour !"}),
        ("/admin/knowledge/owner", {"filename": "x.md", "owner": "shared"}),
        ("/admin/knowledge/delete", {"filename": "x.md"}),
        ("/admin/logout", {}),
    ]
    for path, data in forms:
        for csrf in (None, "forged-value"):
            body = dict(data) if csrf is None else {**data, "csrf_token": csrf}
            response = await admin.post(path, data=body)
            assert response.status_code == 403, (path, csrf, response.text)
    upload = await admin.post(
        "/admin/knowledge/upload",
        files={"files": ("a.md", b"# A\n\ntexte", "text/markdown")},
        data={"owner": "auto"},
    )
    assert upload.status_code == 403
    # nothing happened
    assert (await admin_deps.store.get_escalation(escalation)).status == "open"
    assert all(m.role != "team" for m in await admin_deps.store.get_messages(conversation))
    assert await admin_deps.store.get_document("a.md") is None


async def test_logout_ends_the_session(admin):
    csrf = await csrf_of(admin)
    response = await admin.post("/admin/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login"
    assert (await admin.get("/admin/escalations")).status_code == 303
    assert (await admin.get("/admin/api/escalations")).status_code == 401


async def test_logout_ends_a_copied_cookie_too(admin, admin_deps):
    """Someone who copied the cookie (a shared computer, a leaked header) loses the console
    when its owner signs out, not 8 hours later; another session stays open."""
    stolen = admin.cookies.get(SESSION_COOKIE, path="/admin")
    other = httpx.AsyncClient(transport=admin._transport, base_url="http://127.0.0.1")
    async with other:
        assert (await sign_in(other)).status_code == 303
        csrf = await csrf_of(admin)
        assert (await admin.post("/admin/logout", data={"csrf_token": csrf})).status_code == 303
        thief = {"Cookie": f"{SESSION_COOKIE}={stolen}"}
        async with httpx.AsyncClient(
            transport=admin._transport, base_url="http://127.0.0.1", headers=thief
        ) as copy:
            assert (await copy.get("/admin/escalations")).status_code == 303
            assert (await copy.get("/admin/api/escalations")).status_code == 401
        assert (await other.get("/admin/escalations")).status_code == 200


async def test_console_disabled_without_token(tmp_path, embedder):
    from copines.deps import Deps
    from tests.admin.conftest import console_app

    settings = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}")
    deps = await Deps.create(settings, embedder=embedder)
    try:
        transport = httpx.ASGITransport(app=console_app(deps))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            page = await http.get("/admin/login")
            assert "désactivée" in page.text
            response = await sign_in(http, "")
            assert "error=1" in response.headers["location"]
            assert (await http.get("/admin/api/escalations")).status_code == 401
    finally:
        await deps.aclose()


def test_serve_refuses_a_placeholder_token_on_a_public_address(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from copines.cli import main
    from copines.config import get_settings

    monkeypatch.chdir(tmp_path)  # no .env file
    monkeypatch.setenv("COPINES_ADMIN_TOKEN", "changeme")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code != 0
    assert "COPINES_ADMIN_TOKEN" in result.output


async def test_pages_cannot_be_framed_or_cached(client, admin):
    for path in ("/admin/login", "/admin/escalations"):
        response = await admin.get(path)
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"


async def test_forms_without_session_change_nothing(client, admin_deps):
    seeded = await seed(admin_deps)
    conversation = seeded.conversations["compta"]
    escalation = seeded.escalations["compta"]
    for path, data in (
        (f"/admin/conversations/{conversation}/reply", {"content": "Bonjour"}),
        (f"/admin/escalations/{escalation}/status", {"status": "handled"}),
        ("/admin/knowledge/delete", {"filename": "agence-faq.md"}),
    ):
        response = await client.post(path, data={**data, "csrf_token": "x"})
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/login"
    assert all(m.role != "team" for m in await admin_deps.store.get_messages(conversation))
    assert (await admin_deps.store.get_escalation(escalation)).status == "open"
    assert await admin_deps.store.get_document("agence-faq.md") is not None
