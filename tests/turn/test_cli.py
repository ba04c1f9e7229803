"""The turn's commands (route, analyze, ask, eval): one cascade with the API's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from copines.cli import main
from copines.config import get_settings
from copines.eval import EVAL_DIR, read_part
from copines.eval.report import TARGETS, evaluate

ROUTE_FIELDS = {
    "id",
    "agent",
    "confidence",
    "primary_need",
    "secondary_needs",
    "reasoning",
    "router",
    "reason",
}


@pytest.fixture
def cli(tmp_path, knowledge_url, embedder, monkeypatch):
    """Run commands on a copy of the sample knowledge (on every backend), offline, with the
    session's embedder."""
    monkeypatch.setenv("DATABASE_URL", knowledge_url)
    monkeypatch.setenv("COPINES_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("copines.deps.build_embedder", lambda settings: embedder)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    yield invoke
    get_settings.cache_clear()


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip().startswith("{")]


def test_route_json(cli):
    result = cli("route", "Comment installer le pixel Meta sur Systeme.io ?", "--json")
    assert result.exit_code == 0, result.output
    [decision] = lines(result.output)
    assert set(decision) == ROUTE_FIELDS - {"id"}
    assert decision["agent"] == "audrey" and decision["router"] == "local"


def test_route_jsonl_batch_with_history_and_a_bad_line(cli, tmp_path):
    batch = tmp_path / "in.jsonl"
    batch.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "message": "Je veux parler à un humain", "history": []}),
                json.dumps(
                    {
                        "id": "b",
                        "message": "et ensuite ?",
                        "history": [
                            {"role": "user", "content": "Comment faire un carrousel ?"},
                            {"role": "assistant", "content": "Slide 1...", "agent": "carole"},
                        ],
                    }
                ),
                "{pas du json",
                json.dumps({"id": "d", "message": "Idées de reels pour la rentrée ?"}),
            ]
        ),
        encoding="utf-8",
    )
    result = cli("route", "--jsonl", str(batch))
    assert result.exit_code == 0, result.output
    out = lines(result.output)
    assert [o.get("id") for o in out] == ["a", "b", None, "d"]
    assert out[0]["agent"] == "escalate" and out[1]["agent"] == "carole"
    assert "line 3" in out[2]["error"]
    assert set(out[3]) == ROUTE_FIELDS


def test_analyze_jsonl(cli, tmp_path):
    batch = tmp_path / "in.jsonl"
    batch.write_text(
        json.dumps({"id": "x", "message": "Merci, c'est génial !", "history": []})
        + "\n"
        + json.dumps({"id": "y", "message": "Combien coûte votre accompagnement ?"})
        + "\n",
        encoding="utf-8",
    )
    result = cli("analyze", "--jsonl", str(batch))
    assert result.exit_code == 0, result.output
    x, y = lines(result.output)
    assert x == {"id": "x", "sentiment": "positive", "upsell": False, "loop": False}
    assert y["upsell"] is True


def test_ask_runs_whole_turns_and_continues_a_conversation(cli):
    first = cli("ask", "Comment je fais une séquence de bienvenue ?", "--json")
    assert first.exit_code == 0, first.output
    [turn] = lines(first.stdout)  # the log lines go to stderr with --json
    assert turn["agent"] == "audrey" and turn["model"] == "offline" and turn["sources"]
    second = cli("ask", "et pour l'étape 2 ?", "--conversation", turn["conversation_id"], "--json")
    [turn2] = lines(second.stdout)
    assert turn2["conversation_id"] == turn["conversation_id"] and turn2["agent"] == "audrey"
    human = cli("ask", "Je veux parler à quelqu'un de l'équipe")
    assert human.exit_code == 0 and "L'équipe" in human.output


def test_eval_reads_package_data_only_and_reports_a_part(cli, monkeypatch):
    """`copines eval --part dev`: sizes, origin, accuracy by difficulty, decide-alone band,
    ECE and post-processing F1, from the files the package ships (never tests/)."""
    assert not list((Path(__file__).resolve().parents[1]).glob("data/*.jsonl"))
    assert EVAL_DIR.is_relative_to(Path(__import__("copines").__file__).parent)
    result = cli("eval", "--part", "dev", "--json")
    [report] = lines(result.output)
    assert result.exit_code == (0 if report["passed"] else 1)
    routing = report["routing"]
    assert report["part"] == "dev" and routing["n"] == len(read_part("dev", "routing"))
    assert set(routing["by_difficulty"]) >= {"medium", "hard"}
    assert 0 <= routing["calibration"]["ece"] <= 1 and routing["calibration"]["bins"]
    band = routing["decide_alone"]
    assert 0 < band["coverage"] <= 1 and band["decisions"] > 0
    assert set(report["targets"]) <= set(TARGETS)


def test_eval_rejects_an_unknown_part(cli):
    result = cli("eval", "--part", "secret")
    assert result.exit_code == 2 and "secret" in result.output


# The evaluation reads the labelled files, the router and the embedder: one backend is enough.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_router_holds_on_the_dev_part(knowledge_deps):
    """A floor that a broken model or feature pipeline falls under (settings were chosen on
    dev, so this is no estimate of quality: `copines eval` on the test part is)."""
    report = await evaluate(knowledge_deps, "dev")
    routing = report["routing"]
    assert routing["n"] >= 100
    assert routing["accuracy"] >= 0.78
    assert routing["decide_alone"]["precision"] >= 0.9
    for cls in ("audrey", "carole", "escalate", "assistant"):
        assert routing["f1"][cls]["f1"] >= 0.6, (cls, routing["f1"][cls])


def test_route_honours_the_decide_alone_setting(cli, fake_chat, monkeypatch):
    """The CLI builds the API's cascade: with a model and the threshold out of reach, the
    orchestrator decides; a safety rule still decides alone."""
    from tests.fakes.openai_chat import Reply
    from tests.turn.conftest import KEY, ORCH

    monkeypatch.setenv("COPINES_LLM_BASE_URL", fake_chat.url)
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("COPINES_ORCHESTRATOR_MODEL", ORCH)
    monkeypatch.setenv("COPINES_ROUTER_DECIDE_ALONE", "2")
    fake_chat.default(
        ORCH, Reply(json.dumps({"agent": "carole", "confidence": 0.9, "reasoning": "ok"}))
    )
    result = cli("route", "Comment installer le pixel Meta sur Systeme.io ?", "--json")
    [decision] = lines(result.output)
    assert decision["router"] == "llm" and decision["agent"] == "carole"
    assert len(fake_chat.requests) == 1
    result = cli("route", "Mon client a fait un malaise pendant la séance", "--json")
    [decision] = lines(result.output)
    assert decision["agent"] == "escalate" and decision["reason"] == "emergency"
    assert len(fake_chat.requests) == 1


def test_the_cli_and_the_api_route_with_the_same_cascade(cli, tmp_path, embedder):
    """`copines route` and the turn runner (the API's) decide alike, with the same settings."""
    import asyncio

    from copines.deps import Deps
    from copines.turn import TurnRunner

    messages = [
        "Comment installer le pixel Meta sur Systeme.io ?",
        "Quelles idées de reels pour une naturopathe qui débute ?",
        "bonjour !",
        "J'ai payé la formation et je n'ai pas reçu mes accès",
        "Comment utiliser Notion pour organiser mes séances ?",
    ]
    batch = tmp_path / "in.jsonl"
    batch.write_text("\n".join(json.dumps({"message": m}) for m in messages), encoding="utf-8")
    from_cli = lines(cli("route", "--jsonl", str(batch)).output)

    async def from_api() -> list:
        deps = await Deps.create(get_settings(), embedder=embedder)
        runner = TurnRunner(deps)
        try:
            out = []
            for message in messages:
                vector = await embedder.embed_one(message)
                out.append((await runner.router.route(message, vector, []))[0])
            return out
        finally:
            await runner.aclose()
            await deps.aclose()

    decisions = asyncio.run(from_api())
    assert {d.agent for d in decisions} >= {"audrey", "carole", "assistant", "escalate"}
    for decision, decided in zip(decisions, from_cli, strict=True):
        assert (decision.agent, decision.reason) == (decided["agent"], decided["reason"])
        assert abs(decision.confidence - decided["confidence"]) < 1e-3
