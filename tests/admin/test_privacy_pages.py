"""The console's personal-data requests: find by email, export as JSON, delete; the inbox's
markers and plurals."""

from __future__ import annotations

import json

from copines.store.base import Escalation, Message
from tests.admin.conftest import csrf_of, seed

EMAIL = "Marie@Exemple.fr"


async def test_a_visitors_data_is_found_by_email_exported_and_deleted(admin, admin_deps):
    seeded = await seed(admin_deps)
    store = admin_deps.store
    mine = [seeded.conversations["kajabi"], seeded.conversations["compta"]]
    for conversation in mine:
        await store.set_conversation_email(conversation, EMAIL)
    await store.add_message(
        Message(mine[1], "team", "Bonjour !", meta={"author": "team", "author_name": "Sophie"})
    )

    # By POST with the session's CSRF token: the email never lands in a URL (access logs,
    # history, Referer).
    csrf = await csrf_of(admin, "/admin/privacy")
    assert (
        await admin.post("/admin/privacy", data={"email": "marie@exemple.fr"})
    ).status_code == 403
    in_url = await admin.get("/admin/privacy", params={"email": "marie@exemple.fr"})
    assert "conversations pour" not in in_url.text
    page = await admin.post(
        "/admin/privacy", data={"email": "marie@exemple.fr", "csrf_token": csrf}
    )
    assert page.status_code == 200
    assert "privacy/export?" not in page.text and "?email=" not in page.text
    assert "2 conversations pour" in page.text
    for conversation in mine:
        assert f"/admin/conversations/{conversation}" in page.text
    assert seeded.conversations["reels"] not in page.text

    exported = await admin.post(
        "/admin/privacy/export", data={"email": "marie@exemple.fr", "csrf_token": csrf}
    )
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    data = json.loads(exported.text)
    assert {c["conversation_id"] for c in data["conversations"]} == set(mine)
    compta = next(c for c in data["conversations"] if c["conversation_id"] == mine[1])
    assert compta["email"] == EMAIL
    assert [m["role"] for m in compta["messages"]] == ["user", "assistant", "team"]
    assert compta["messages"][-1]["author"] == "Sophie"
    assert compta["escalations"][0]["status"] == "open"
    one = await admin.get(f"/admin/conversations/{mine[0]}/export")
    assert json.loads(one.text)["feedback"] == [
        {"message_id": seeded.answers["kajabi"], "rating": 1, "comment": ""}
    ]

    # Deleting needs the session's CSRF token.
    refused = await admin.post("/admin/privacy/delete", data={"email": EMAIL})
    assert refused.status_code == 403
    done = await admin.post("/admin/privacy/delete", data={"email": EMAIL, "csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"].endswith("msg=erased")
    for conversation in mine:
        assert await store.get_conversation(conversation) is None
    assert await store.get_conversation(seeded.conversations["reels"]) is not None

    # One conversation, from its own page.
    reels = seeded.conversations["reels"]
    csrf = await csrf_of(admin, f"/admin/conversations/{reels}")
    gone = await admin.post(f"/admin/conversations/{reels}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert await store.get_conversation(reels) is None
    assert (await admin.get(f"/admin/conversations/{reels}/export")).status_code == 404


async def test_inbox_cards_mark_urgent_and_unhappy_hand_offs_with_right_plurals(admin, admin_deps):
    seeded = await seed(admin_deps)
    store = admin_deps.store
    angry = seeded.conversations["hooks"]
    await store.add_message(
        Message(
            angry,
            "user",
            "Je n'ai plus accès à ma formation, c'est urgent !!",
            meta={"sentiment": "negative"},
        )
    )
    answer = await store.add_message(
        Message(
            angry, "assistant", "Je transmets.", agent="escalate", meta={"sentiment": "negative"}
        )
    )
    for reason in ("accès perdu", "toujours bloquée"):
        await store.add_escalation(Escalation(angry, reason, message_id=answer))
    inbox = (await admin.get("/admin/escalations")).text
    assert "2 ouvertes" in inbox
    card = inbox[inbox.index("plus accès à ma formation") :]
    card = card[: card.index("</li>")]
    assert ">urgent<" in card and ">mécontente<" in card and ">2 demandes<" in card
    calm = inbox[inbox.index("déclarer ma TVA") :]
    calm = calm[: calm.index("</li>")]
    assert "urgent" not in calm and "mécontente" not in calm

    csrf = await csrf_of(admin)
    await admin.post(
        f"/admin/escalations/{seeded.escalations['compta']}/status",
        data={"csrf_token": csrf, "status": "handled"},
    )
    assert "1 ouverte<" in (await admin.get("/admin/escalations")).text
