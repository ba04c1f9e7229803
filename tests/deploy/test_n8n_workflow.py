"""deploy/n8n/workflow.json and deploy/n8n/render.py, read as files: a workflow the free,
self-hosted n8n runs (no paid feature), with nothing secret in it. The real n8n runs it in
test_n8n_live.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "deploy" / "n8n" / "workflow.json"
sys.path.insert(0, str(WORKFLOW.parent))
import render  # noqa: E402  (deploy/n8n/render.py is a script, not a package)


@pytest.fixture(scope="module")
def workflow() -> dict:
    return json.loads(WORKFLOW.read_text(encoding="utf-8"))


def _nodes(workflow: dict) -> dict[str, dict]:
    return {n["name"]: n for n in workflow["nodes"]}


def _targets(workflow: dict, name: str, output: int = 0) -> list[str]:
    outputs = workflow["connections"].get(name, {}).get("main", [])
    return [link["node"] for link in outputs[output]] if output < len(outputs) else []


def test_every_node_is_well_formed_and_every_link_lands(workflow: dict) -> None:
    names = [n["name"] for n in workflow["nodes"]]
    assert len(names) == len(set(names))
    for node in workflow["nodes"]:
        assert node["type"].startswith("n8n-nodes-base.")
        assert isinstance(node["typeVersion"], int | float)
        assert len(node["position"]) == 2 and all(isinstance(v, int) for v in node["position"])
    for source, kinds in workflow["connections"].items():
        assert source in names
        for outputs in kinds["main"]:
            for link in outputs:
                assert link["node"] in names and link["type"] == "main"


def test_configuration_comes_from_the_environment_not_paid_variables(workflow: dict) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "$vars" not in text  # n8n variables need a paid licence
    nodes = _nodes(workflow)
    assert nodes["Ask copines"]["parameters"]["url"] == "={{ $env.COPINES_URL }}/api/chat"
    assert "$env.COPINES_ESCALATION_NOTIFY_URL" in nodes["Notify the team"]["parameters"]["url"]


def test_the_answer_and_its_status_pass_through(workflow: dict) -> None:
    nodes = _nodes(workflow)
    (hook,) = [n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.webhook"]
    assert hook["parameters"]["responseMode"] == "responseNode"
    assert _targets(workflow, hook["name"]) == ["Ask copines"]
    ask = nodes["Ask copines"]["parameters"]
    assert ask["options"]["response"]["response"] == {"neverError": True, "fullResponse": True}
    headers = {h["name"]: h["value"] for h in ask["headerParameters"]["parameters"]}
    assert "x-forwarded-for" in headers["X-Copines-Visitor-IP"]
    # copines down: the error output answers 503 instead of n8n's own error page.
    assert _targets(workflow, "Ask copines", 1) == ["Respond (copines unreachable)"]
    (limited,) = _targets(workflow, "Ask copines")
    (respond_429,) = _targets(workflow, limited, 0)
    retry = nodes[respond_429]["parameters"]["options"]["responseHeaders"]["entries"]
    assert any(h["name"] == "Retry-After" and "retry-after" in h["value"] for h in retry)
    respond = nodes["Respond"]["parameters"]
    assert respond["options"]["responseCode"] == "={{ $('Ask copines').item.json.statusCode }}"
    assert _targets(workflow, "Notify the team") == ["Respond"]
    assert nodes["Notify the team"]["onError"] == "continueRegularOutput"


def test_no_secret_or_host_is_written_in_the_workflow() -> None:
    text = WORKFLOW.read_text(encoding="utf-8").lower()
    for needle in ("http://", "https://", "api_key", "bearer", "sk-"):
        assert needle not in text


def test_render_writes_the_allowed_origins_into_the_webhook(workflow: dict) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(WORKFLOW.parent / "render.py"),
            "--origins",
            "https://lagencedescopines.com, https://www.lagencedescopines.com/",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rendered = json.loads(done.stdout)
    (hook,) = [n for n in rendered["nodes"] if n["type"] == "n8n-nodes-base.webhook"]
    assert hook["parameters"]["options"]["allowedOrigins"] == (
        "https://lagencedescopines.com,https://www.lagencedescopines.com"
    )
    assert [n["name"] for n in rendered["nodes"]] == [n["name"] for n in workflow["nodes"]]


@pytest.mark.parametrize("bad", ["", "lagencedescopines.com", "https://site.fr/blog", "ftp://x.fr"])
def test_render_refuses_what_is_not_an_origin(bad: str) -> None:
    with pytest.raises(ValueError):
        render.origins_list(bad)
