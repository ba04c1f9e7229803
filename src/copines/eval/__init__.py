"""The labelled sets, shipped with the package, in three parts kept apart.

- `train/`: what the router learns from (the sets the earlier router was tuned on included);
- `dev/`: where every setting is chosen (temperature, decide-alone threshold, features);
- `test/`: the sealed part, written by people who never saw the router's code or data; it is
  read only to report (`copines eval`), never to choose anything.

Each part holds `routing*.jsonl` and `postprocess*.jsonl`, and a README.md on its origin.
"""

from __future__ import annotations

import json
from pathlib import Path

from copines.store.base import Message

EVAL_DIR = Path(__file__).parent
PARTS = ("train", "dev", "test")


def part_files(part: str, kind: str) -> list[Path]:
    """The files of one part (`kind`: routing or postprocess)."""
    if part not in PARTS:
        raise ValueError(f"unknown part '{part}'; choose one of: {', '.join(PARTS)}")
    return sorted((EVAL_DIR / part).glob(f"{kind}*.jsonl"))


def read_part(part: str, kind: str) -> list[dict]:
    rows = []
    for path in part_files(part, kind):
        for line in path.read_text("utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def origin(part: str) -> str:
    """The part's origin note (its README's first paragraph)."""
    readme = EVAL_DIR / part / "README.md"
    if not readme.exists():
        return ""
    text = readme.read_text("utf-8").strip()
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip() and not p.startswith("#")]
    return paragraphs[0] if paragraphs else ""


def history_of(raw: object) -> list[Message]:
    """Contract history ([{role, content, agent?}]) as stored messages."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("'history' must be a list of {role, content}")
    history = []
    for item in raw:
        if not isinstance(item, dict) or "role" not in item or "content" not in item:
            raise ValueError("each history item needs 'role' and 'content'")
        history.append(
            Message("cli", str(item["role"]), str(item["content"]), agent=item.get("agent"))
        )
    return history
