"""deploy/n8n/workflow.json: the agency's option B (n8n in front of the API), checked for
structure, its validation code run for real with Node, and imported with n8n's CLI when present."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "deploy" / "n8n" / "workflow.json"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return json.loads(WORKFLOW.read_text(encoding="utf-8"))


def _by_type(workflow: dict, node_type: str) -> list[dict]:
    return [n for n in workflow["nodes"] if n["type"] == node_type]


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
        assert isinstance(node["parameters"], dict)
    for source, kinds in workflow["connections"].items():
        assert source in names
        for outputs in kinds["main"]:
            for link in outputs:
                assert link["node"] in names and link["type"] == "main"


def test_a_message_flows_from_the_webhook_to_the_api_and_back(workflow: dict) -> None:
    (hook,) = _by_type(workflow, "n8n-nodes-base.webhook")
    assert hook["parameters"]["httpMethod"] == "POST"
    assert hook["parameters"]["path"] == "copines-chat"
    assert hook["parameters"]["responseMode"] == "responseNode"

    (validate,) = _targets(workflow, hook["name"])
    assert next(n for n in workflow["nodes"] if n["name"] == validate)["type"].endswith(".code")
    (gate,) = _targets(workflow, validate)
    (ask,) = _targets(workflow, gate, 0)  # valid
    (refuse,) = _targets(workflow, gate, 1)  # invalid: answered 400 without calling the API
    nodes = {n["name"]: n for n in workflow["nodes"]}
    assert nodes[refuse]["type"] == "n8n-nodes-base.respondToWebhook"
    assert nodes[refuse]["parameters"]["options"]["responseCode"] == 400

    call = nodes[ask]["parameters"]
    assert nodes[ask]["type"] == "n8n-nodes-base.httpRequest"
    assert call["method"] == "POST"
    assert call["url"] == "={{ $vars.COPINES_URL }}/api/chat"  # an n8n variable, no host here

    (escalated,) = _targets(workflow, ask)
    condition = nodes[escalated]["parameters"]["conditions"]["conditions"][0]
    assert "escalated" in condition["leftValue"]
    (notify,) = _targets(workflow, escalated, 0)
    assert nodes[notify]["type"] == "n8n-nodes-base.httpRequest"
    assert "$vars." in nodes[notify]["parameters"]["url"]
    assert nodes[notify].get("continueOnFail")  # a failed notification still answers
    (respond,) = _targets(workflow, escalated, 1)
    assert _targets(workflow, notify) == [respond]
    assert nodes[respond]["type"] == "n8n-nodes-base.respondToWebhook"
    assert "Ask copines" in nodes[respond]["parameters"]["responseBody"]


def test_no_secret_or_host_is_written_in_the_workflow(workflow: dict) -> None:
    text = WORKFLOW.read_text(encoding="utf-8").lower()
    for needle in ("http://", "https://", "api_key", "bearer", "sk-"):
        assert needle not in text


def _run_validation(workflow: dict, body: dict) -> dict:
    code = next(n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.code")
    script = (
        "const $input = { first: () => ({ json: { body: JSON.parse(process.argv[1]) } }) };\n"
        f"const run = () => {{\n{code['parameters']['jsCode']}\n}};\n"
        "console.log(JSON.stringify(run()[0].json));\n"
    )
    done = subprocess.run(
        ["node", "-e", script, json.dumps(body)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_validation_code_accepts_and_refuses_what_the_api_would(workflow: dict) -> None:
    ok = _run_validation(workflow, {"message": "  Comment créer un lead magnet ?  "})
    assert ok == {
        "valid": True,
        "error": None,
        "payload": {"message": "Comment créer un lead magnet ?"},
    }
    follow = _run_validation(
        workflow, {"message": "et ensuite ?", "conversation_id": "abc-123", "token": "t0k"}
    )
    assert follow["valid"] and follow["payload"]["conversation_id"] == "abc-123"
    assert not _run_validation(workflow, {"message": "   "})["valid"]
    assert not _run_validation(workflow, {"message": "x" * 2001})["valid"]
    assert not _run_validation(workflow, {"message": "hi", "conversation_id": "abc"})["valid"]
    assert not _run_validation(
        workflow, {"message": "hi", "conversation_id": "a b;", "token": "t"}
    )["valid"]
    assert not _run_validation(workflow, {"message": 42})["valid"]


def _n8n() -> str | None:
    local = ROOT / "deploy" / "n8n" / "node_modules" / ".bin" / "n8n"
    for candidate in (os.environ.get("N8N_BIN"), shutil.which("n8n"), str(local)):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.mark.skipif(
    _n8n() is None,
    reason="n8n is not installed (npm install n8n, or N8N_BIN=...; its install fetches a "
    "tarball outside the npm registry, so it fails on machines limited to the registries)",
)
def test_n8n_imports_the_workflow(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "N8N_USER_FOLDER": str(tmp_path),
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_ENCRYPTION_KEY": "tests-only-key",
        "DB_TYPE": "sqlite",
    }
    done = subprocess.run(
        [_n8n(), "import:workflow", f"--input={WORKFLOW}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run(
        [_n8n(), "list:workflow"], env=env, capture_output=True, text=True, timeout=300
    )
    assert "copines" in listed.stdout
