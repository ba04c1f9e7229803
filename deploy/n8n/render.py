"""Write the n8n workflow with the widget's allowed origins filled in.

n8n answers a browser's CORS preflight from the webhook node's "Allowed Origins" option as it is
written in the workflow: it evaluates no expression there, so the origins cannot come from the
environment like the workflow's other settings. Run this before importing:

    python deploy/n8n/render.py --origins "https://lagencedescopines.com,https://www.lagencedescopines.com" \
        > /tmp/copines-workflow.json
    n8n import:workflow --input=/tmp/copines-workflow.json

Use the same list as COPINES_ALLOWED_ORIGINS. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

TEMPLATE = Path(__file__).with_name("workflow.json")
WEBHOOK = "n8n-nodes-base.webhook"


def origins_list(text: str) -> list[str]:
    """The comma-separated origins, each checked to be a scheme and a host, with no path."""
    origins = [part.strip().rstrip("/") for part in text.split(",") if part.strip()]
    if not origins:
        raise ValueError("give at least one origin, e.g. https://lagencedescopines.com")
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ValueError(f"{origin!r} is not an origin (scheme and host, no path)")
    return origins


def render(workflow: dict, origins: list[str]) -> dict:
    """The workflow with its webhook node answering CORS for exactly these origins."""
    rendered = json.loads(json.dumps(workflow))
    hooks = [node for node in rendered["nodes"] if node["type"] == WEBHOOK]
    if len(hooks) != 1:
        raise ValueError("the workflow should have exactly one webhook node")
    hooks[0]["parameters"].setdefault("options", {})["allowedOrigins"] = ",".join(origins)
    return rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--origins", required=True, help="comma-separated, as COPINES_ALLOWED_ORIGINS"
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    args = parser.parse_args(argv)
    try:
        origins = origins_list(args.origins)
    except ValueError as error:
        parser.error(str(error))
    workflow = json.loads(args.template.read_text(encoding="utf-8"))
    json.dump(render(workflow, origins), sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
