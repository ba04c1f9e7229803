"""Analytics figures equal what the seeded turns say, computed here independently."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from copines.admin.analytics import percentile
from copines.admin.turns import CONSOLE_TZ
from tests.admin.conftest import TURNS, backdate, db_path, seed


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[math.ceil(q / 100 * len(ordered)) - 1]


def test_percentile_nearest_rank():
    assert percentile([], 50) == 0.0
    assert percentile([5.0], 95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([3.0, 1.0, 2.0, 10.0], 50) == 2.0


async def test_analytics_equal_the_stored_turns(admin, admin_deps):
    seeded = await seed(admin_deps)
    # Two turns happened three days ago (both messages of each), the rest today.
    today = datetime.now(CONSOLE_TZ).date()  # the console counts the agency's days
    earlier = datetime.now(UTC) - timedelta(days=3)
    moved = ["kajabi", "hooks"]
    ids = []
    for name in moved:
        messages = await admin_deps.store.get_messages(seeded.conversations[name])
        ids += [m.id for m in messages]
    backdate(db_path(admin_deps), ids, earlier)

    since = (today - timedelta(days=6)).isoformat()
    response = await admin.get("/admin/api/analytics", params={"since": since})
    assert response.status_code == 200
    got = response.json()

    rows = [
        dict(
            zip(
                [
                    "name",
                    "question",
                    "agent",
                    "router",
                    "sentiment",
                    "upsell",
                    "best",
                    "cost",
                    "timings",
                    "rating",
                ],
                t,
                strict=True,
            )
        )
        for t in TURNS
    ]
    earlier_day = earlier.astimezone(CONSOLE_TZ).date()
    day_of = {r["name"]: (earlier_day if r["name"] in moved else today) for r in rows}
    per_day: dict[str, dict[str, int]] = {}
    for r in rows:
        day = day_of[r["name"]].isoformat()
        per_day.setdefault(day, {})
        per_day[day][r["agent"]] = per_day[day].get(r["agent"], 0) + 1
    assert got["turns"] == len(rows) == 5
    assert got["conversations"] == 5
    assert got["turns_per_day"] == per_day
    assert got["routing"] == {"local": 2, "llm": 3}
    assert got["escalations"] == 1
    assert got["escalation_rate"] == pytest.approx(1 / 5)
    assert got["sentiment"] == {"neutral": 3, "positive": 1, "negative": 1}
    assert got["upsell_turns"] == 2
    assert got["upsell_triggers"] == {"acheter": 2}
    up = sum(r["rating"] == 1 for r in rows)
    down = sum(r["rating"] == -1 for r in rows)
    assert (got["thumbs_up"], got["thumbs_down"]) == (up, down) == (1, 2)
    assert got["feedback_ratio"] == pytest.approx(up / (up + down))
    total = sum(r["cost"] for r in rows)
    assert got["cost_total"] == pytest.approx(total)
    cost_per_day: dict[str, float] = {}
    for r in rows:
        day = day_of[r["name"]].isoformat()
        cost_per_day[day] = cost_per_day.get(day, 0.0) + r["cost"]
    assert got["cost_per_day"] == pytest.approx(cost_per_day)
    assert got["cost_per_conversation"] == pytest.approx(total / 5)
    for step in ("route", "retrieval", "generation"):
        values = [r["timings"][step] for r in rows if step in r["timings"]]
        assert got["latency_ms"][step]["count"] == len(values)
        assert got["latency_ms"][step]["p50"] == nearest_rank(values, 50)
        assert got["latency_ms"][step]["p95"] == nearest_rank(values, 95)

    # A period that leaves out the older day leaves out its turns.
    recent = await admin.get("/admin/api/analytics", params={"since": today.isoformat()})
    assert recent.json()["turns"] == 3
    assert recent.json()["cost_total"] == pytest.approx(
        sum(r["cost"] for r in rows if r["name"] not in moved)
    )

    # The page shows the same figures.
    page = await admin.get("/admin/analytics", params={"since": since})
    assert 'id="kpi-turns">5<' in page.text
    assert 'id="kpi-escalation">20 %<' in page.text
    assert 'id="kpi-feedback">33 %<' in page.text
    assert 'id="kpi-upsell">2<' in page.text
    assert f'id="kpi-cost">{total:.4f} $<' in page.text


async def test_analytics_empty_period(admin):
    response = await admin.get(
        "/admin/api/analytics", params={"since": "2001-01-01", "until": "2001-01-07"}
    )
    got = response.json()
    assert got["turns"] == 0 and got["escalation_rate"] == 0 and got["latency_ms"] == {}
    page = await admin.get(
        "/admin/analytics", params={"since": "2001-01-01", "until": "2001-01-07"}
    )
    assert page.status_code == 200


def test_small_talk_is_no_knowledge_gap():
    """The assistant's replies search nothing: no score, so never a low-score question."""
    from copines.admin.turns import best_score, read_turns
    from copines.store.base import Message

    hello = Message("c", "user", "Bonjour !", id=1)
    reply = Message("c", "assistant", "Bonjour et bienvenue !", agent="assistant", id=2)
    expert = Message("c", "assistant", "Voici...", agent="audrey", id=3)
    assert best_score(reply) is None
    assert best_score(expert) == 0.0  # an expert's search that found nothing is a gap
    [turn, _] = read_turns([hello, reply, expert])
    assert turn.best_score is None and not turn.escalated
