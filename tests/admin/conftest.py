"""Console fixtures: a store with the sample knowledge, a signed-in client, seeded turns."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from copines.conversations import start_conversation
from copines.deps import Deps
from copines.providers.embeddings import LocalEmbedder
from copines.store.base import Escalation, Feedback, Message
from tests.conftest import make_settings

TOKEN = "console-test-token-4f9b2c7d1e"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def admin_deps(
    tmp_path: Path, sample_knowledge_sqlite: Path, embedder: LocalEmbedder
) -> AsyncIterator[Deps]:
    """Every part, on a SQLite copy of the sample knowledge, with an admin token set."""
    db = tmp_path / "console.db"
    shutil.copy(sample_knowledge_sqlite, db)
    settings = make_settings(tmp_path, database_url=f"sqlite:///{db}", admin_token=TOKEN)
    built = await Deps.create(settings, embedder=embedder)
    try:
        yield built
    finally:
        await built.aclose()


def console_app(deps: Deps) -> FastAPI:
    """Only the console's router, over `deps` (the public app is tested on its own)."""
    from copines.api.routes.admin import router

    app = FastAPI()
    app.state.deps = deps
    app.include_router(router)
    return app


@pytest.fixture
async def client(admin_deps: Deps) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the console, not signed in."""
    transport = httpx.ASGITransport(app=console_app(admin_deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


AUTHOR = "Sophie"


async def sign_in(http: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    """Fill the login form as a browser would (with the display name that signs replies)."""
    page = await http.get("/admin/login")
    csrf = CSRF_RE.search(page.text).group(1)
    return await http.post(
        "/admin/login", data={"token": token, "csrf_token": csrf, "name": AUTHOR}
    )


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A signed-in client of the console."""
    response = await sign_in(client)
    assert response.status_code == 303, response.text
    return client


async def csrf_of(http: httpx.AsyncClient, path: str = "/admin/escalations") -> str:
    page = await http.get(path)
    assert page.status_code == 200, page.text
    return CSRF_RE.search(page.text).group(1)


@dataclass
class Seeded:
    """What `seed` stored, so tests compute expected figures on their own."""

    conversations: dict[str, str] = field(default_factory=dict)  # name -> id
    tokens: dict[str, str] = field(default_factory=dict)  # name -> visitor token
    answers: dict[str, int] = field(default_factory=dict)  # name -> assistant message id
    escalations: dict[str, int] = field(default_factory=dict)


# (name, question, agent, router, sentiment, upsell, best score, cost, timings, feedback)
TURNS = [
    (
        "kajabi",
        "Comment connecter Kajabi à ActiveCampaign ?",
        "audrey",
        "local",
        "neutral",
        False,
        0.71,
        0.0021,
        {"route": 12.0, "retrieval": 40.0, "generation": 900.0},
        1,
    ),
    (
        "tunnel",
        "Je veux acheter votre accompagnement tunnel de vente",
        "audrey",
        "llm",
        "positive",
        True,
        0.66,
        0.0043,
        {"route": 380.0, "retrieval": 55.0, "generation": 1500.0},
        None,
    ),
    (
        "reels",
        "Quelle durée idéale pour un reel Instagram ?",
        "carole",
        "local",
        "neutral",
        False,
        0.74,
        0.0018,
        {"route": 10.0, "retrieval": 35.0, "generation": 700.0},
        -1,
    ),
    (
        "hooks",
        "Je suis perdue, mes reels ne marchent pas du tout",
        "carole",
        "llm",
        "negative",
        True,
        0.52,
        0.0032,
        {"route": 420.0, "retrieval": 60.0, "generation": 1200.0},
        -1,
    ),
    (
        "compta",
        "Comment déclarer ma TVA en micro-entreprise ?",
        "escalate",
        "llm",
        "neutral",
        False,
        0.12,
        0.0005,
        {"route": 450.0, "retrieval": 30.0},
        None,
    ),
]


async def seed(deps: Deps) -> Seeded:
    """Five conversations with one turn each, like the turn engine stores them."""
    store = deps.store
    out = Seeded()
    for name, question, agent, router, mood, upsell, best, cost, timings, rating in TURNS:
        conversation, token = await start_conversation(store)
        out.conversations[name] = conversation.id
        out.tokens[name] = token
        await store.add_message(
            Message(conversation.id, "user", question, meta={"sentiment": mood})
        )
        escalated = agent == "escalate"
        # As the turn stores an answer (copines.turn): sources with their scores, the
        # decision and the post-processing in meta; a hand-off keeps no sources.
        answer = Message(
            conversation.id,
            "assistant",
            "Je transmets ta demande à l'équipe." if escalated else f"Réponse de {agent}.",
            agent=agent,
            confidence=0.4 if escalated else 0.9,
            router=router,
            sources=[]
            if escalated
            else [
                {
                    "filename": f"{agent}-guide.md",
                    "title": "Guide",
                    "owner": agent,
                    "score": best,
                    "heading": "Guide > Étapes",
                },
                {
                    "filename": "faq-agence.md",
                    "title": "FAQ",
                    "owner": "shared",
                    "score": round(best - 0.1, 4),
                    "heading": "FAQ",
                },
            ],
            model="offline" if escalated else "anthropic/claude-3.5-sonnet",
            prompt_tokens=None if escalated else 1200,
            completion_tokens=None if escalated else 300,
            cost_usd=cost,
            timings_ms=timings,
            meta={
                "primary_need": "déclarer la TVA" if escalated else "question",
                "reasoning": "hors du champ des expertes (fiscalité)" if escalated else "",
                "rule": "semantic",
                "scores": {"audrey": 0.31, "carole": 0.22} if escalated else {agent: 0.8},
                "sentiment": mood,
                "upsell": upsell,
                "upsell_reason": "acheter" if upsell else "",
                "loop": False,
                "loop_similarity": 0.0,
            },
        )
        out.answers[name] = await store.add_message(answer)
        if not escalated:
            await store.set_conversation_expert(conversation.id, agent)
        if rating is not None:
            await store.add_feedback(Feedback(conversation.id, out.answers[name], rating))
        if escalated:
            out.escalations[name] = await store.add_escalation(
                Escalation(
                    conversation_id=conversation.id,
                    message_id=out.answers[name],
                    reason="hors du champ des expertes (fiscalité)",
                    primary_need="déclarer la TVA",
                    brief="Motif : déclarer la TVA.\nMessage : « " + question + " »",
                    closest_expert="audrey",
                    meta={"router": router, "confidence": 0.4, "rule": "semantic"},
                )
            )
    return out


def backdate(db_path: Path, message_ids: list[int], when: datetime) -> None:
    """Move messages to another day (the store stamps them with the current time)."""
    with sqlite3.connect(db_path) as db:
        db.executemany(
            "UPDATE messages SET created_at = ? WHERE id = ?",
            [(when.astimezone(UTC).isoformat(timespec="microseconds"), i) for i in message_ids],
        )


def db_path(deps: Deps) -> Path:
    return Path(deps.settings.resolved_database_url.removeprefix("sqlite:///"))
