"""The turn's commands (route, analyze, ask, eval) and the eval targets on the labelled sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from copines.cli import main
from copines.cli_turn import TARGETS, evaluate
from copines.config import get_settings

ROOT = Path(__file__).resolve().parents[2]
ROUTING = ROOT / "tests" / "data" / "routing.jsonl"
POSTPROCESS = ROOT / "tests" / "data" / "postprocess.jsonl"
ROUTE_FIELDS = {
    "id",
    "agent",
    "confidence",
    "primary_need",
    "secondary_needs",
    "reasoning",
    "router",
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


def test_eval_command_reports_accuracy_and_f1(cli, tmp_path):
    small_routing = tmp_path / "r.jsonl"
    small_routing.write_text("\n".join(ROUTING.read_text("utf-8").splitlines()[:12]), "utf-8")
    small_post = tmp_path / "p.jsonl"
    small_post.write_text("\n".join(POSTPROCESS.read_text("utf-8").splitlines()[:8]), "utf-8")
    result = cli(
        "eval", "--routing", str(small_routing), "--postprocess", str(small_post), "--json"
    )
    [report] = lines(result.output)
    assert result.exit_code == (0 if report["passed"] else 1)
    assert report["routing"]["n"] == 12 and report["postprocess"]["n"] == 8
    assert set(report["routing"]["f1"]) <= {"audrey", "carole", "escalate"}
    assert set(report["targets"]) == set(TARGETS)


# The evaluation reads the labelled files, the router and the embedder, never the store: one
# backend is enough.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_eval_meets_its_targets_on_the_labelled_sets(knowledge_deps):
    report = await evaluate(knowledge_deps, ROUTING, POSTPROCESS)
    routing = report["routing"]
    assert routing["n"] >= 150 and report["postprocess"]["n"] >= 80
    assert routing["accuracy"] >= 0.92
    assert routing["local_share"] >= 0.70 and routing["local_decided_accuracy"] >= 0.92
    for cls in ("audrey", "carole", "escalate"):
        assert routing["f1"][cls]["f1"] >= 0.85, (cls, routing["f1"][cls])
    assert report["passed"], report["targets"]
