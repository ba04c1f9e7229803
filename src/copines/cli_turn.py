"""Commands over the turn: route, analyze, ask, eval."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from copines.deps import Deps
from copines.experts import ESCALATE
from copines.postprocess import analyze
from copines.routing import Decision, LocalRouter, Router, finish
from copines.store.base import Message

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
TARGETS = {
    "routing_accuracy": 0.92,
    "local_share": 0.70,
    "local_accuracy": 0.92,
    "sentiment_accuracy": 0.80,
    "upsell_accuracy": 0.85,
    "loop_accuracy": 0.80,
}


def history_of(raw: Any) -> list[Message]:
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


def previous_expert(history: list[Message]) -> str | None:
    for m in reversed(history):
        if m.role == "assistant" and m.agent and m.agent != ESCALATE:
            return m.agent
    return None


def build_router(deps: Deps, local_only: bool = False) -> Router:
    return Router(
        deps.experts,
        LocalRouter(deps.experts, deps.embedder),
        None if local_only else deps.chat,
        orchestrator_model=deps.settings.orchestrator_model,
        timeout=deps.settings.orchestrator_timeout,
    )


async def route_item(deps: Deps, router: Router, message: str, history: list[Message]) -> Decision:
    vector = await deps.embedder.embed_one(message)
    prev = previous_expert(history)
    decision, _ = await router.route(message, vector, history, prev)
    return finish(decision, prev)


async def analyze_item(deps: Deps, message: str, history: list[Message]) -> dict:
    vector = await deps.embedder.embed_one(message)
    earlier = [m.content for m in history if m.role == "user"][-4:]
    previous = [await deps.embedder.embed_one(text) for text in earlier]
    return analyze(message, vector, previous, earlier=earlier).public()


def read_jsonl(lines: Iterable[str]) -> Iterable[tuple[int, dict | None, str | None]]:
    """(line number, item or None, error or None) for each non-blank line."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("message"), str):
                raise ValueError("expected an object with a 'message' string")
            yield number, item, None
        except ValueError as exc:
            yield number, None, f"line {number}: {exc}"


def f1_table(pairs: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per class from (expected, predicted) pairs."""
    classes = sorted({e for e, _ in pairs} | {p for _, p in pairs})
    table = {}
    for c in classes:
        tp = sum(1 for e, p in pairs if e == c and p == c)
        fp = sum(1 for e, p in pairs if e != c and p == c)
        fn = sum(1 for e, p in pairs if e == c and p != c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[c] = {
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "f1": round(f1, 3),
            "support": tp + fn,
        }
    return table


def accuracy(pairs: list[tuple[Any, Any]]) -> float:
    return round(sum(1 for e, p in pairs if e == p) / len(pairs), 4) if pairs else 0.0


async def evaluate(
    deps: Deps, routing_file: Path, post_file: Path, local_only: bool = False
) -> dict:
    """Score the router and the post-processing on the labelled sets."""
    router = build_router(deps, local_only)
    local_router = LocalRouter(deps.experts, deps.embedder)
    rows = [json.loads(line) for line in routing_file.read_text("utf-8").splitlines() if line]
    pairs, local_pairs, cascade_local, by_kind, errors = [], [], 0, {}, []
    local_decided = []
    for row in rows:
        history = history_of(row.get("history"))
        prev = previous_expert(history)
        vector = await deps.embedder.embed_one(row["message"])
        local = finish(await local_router.decide(row["message"], vector, history, prev), prev)
        local_pairs.append((row["expected"], local.agent))
        if local.clear:
            local_decided.append((row["expected"], local.agent))
        decision = await route_item(deps, router, row["message"], history)
        cascade_local += decision.router == "local"
        pairs.append((row["expected"], decision.agent))
        kind = by_kind.setdefault(row.get("kind", "?"), [])
        kind.append((row["expected"], decision.agent))
        if decision.agent != row["expected"]:
            errors.append({"id": row.get("id"), "expected": row["expected"], "got": decision.agent})
    post_rows = [json.loads(line) for line in post_file.read_text("utf-8").splitlines() if line]
    sentiment_pairs, upsell_pairs, loop_pairs = [], [], []
    for row in post_rows:
        got = await analyze_item(deps, row["message"], history_of(row.get("history")))
        sentiment_pairs.append((row["sentiment"], got["sentiment"]))
        upsell_pairs.append((row["upsell"], got["upsell"]))
        loop_pairs.append((row["loop"], got["loop"]))
    report = {
        "routing": {
            "file": str(routing_file),
            "n": len(rows),
            "router": "local" if router.chat is None else "cascade",
            "accuracy": accuracy(pairs),
            "f1": f1_table(pairs),
            "by_kind": {k: accuracy(v) for k, v in sorted(by_kind.items())},
            "local_router_accuracy": accuracy(local_pairs),
            "local_f1": f1_table(local_pairs),
            "local_share": round(len(local_decided) / len(rows), 4) if rows else 0.0,
            "local_decided_accuracy": accuracy(local_decided),
            "decided_locally_in_cascade": round(cascade_local / len(rows), 4) if rows else 0.0,
            "errors": errors,
        },
        "postprocess": {
            "file": str(post_file),
            "n": len(post_rows),
            "sentiment_accuracy": accuracy(sentiment_pairs),
            "sentiment_f1": f1_table(sentiment_pairs),
            "upsell_accuracy": accuracy(upsell_pairs),
            "upsell_f1": f1_table([(str(e), str(p)) for e, p in upsell_pairs])["True"]["f1"],
            "loop_accuracy": accuracy(loop_pairs),
            "loop_f1": f1_table([(str(e), str(p)) for e, p in loop_pairs])["True"]["f1"],
        },
    }
    checks = {
        "routing_accuracy": report["routing"]["accuracy"],
        "local_share": report["routing"]["local_share"],
        "local_accuracy": report["routing"]["local_router_accuracy"],
        "sentiment_accuracy": report["postprocess"]["sentiment_accuracy"],
        "upsell_accuracy": report["postprocess"]["upsell_accuracy"],
        "loop_accuracy": report["postprocess"]["loop_accuracy"],
    }
    report["targets"] = {
        name: {"value": value, "target": TARGETS[name], "met": value >= TARGETS[name]}
        for name, value in checks.items()
    }
    report["passed"] = all(t["met"] for t in report["targets"].values())
    return report


def register(main: click.Group) -> None:
    """Add the turn's commands to the CLI."""
    # Imported here: copines.cli imports this module to register it.
    from copines.cli import console, emit_json, out, run

    @main.command()
    @click.argument("message", required=False)
    @click.option("--json", "as_json", is_flag=True, help="print the decision as JSON")
    @click.option("--jsonl", type=click.File("r"), help='batch: lines {"id", "message", "history"}')
    @click.option("--local-only", is_flag=True, help="never ask the LLM orchestrator")
    def route(message: str | None, as_json: bool, jsonl, local_only: bool) -> None:
        """Show who would answer a message (audrey, carole or escalate) and why."""
        if jsonl is None and not message:
            raise click.UsageError("give MESSAGE, or --jsonl FILE")

        if jsonl is not None:

            async def batch(deps: Deps) -> None:
                router = build_router(deps, local_only)
                for number, item, error in read_jsonl(jsonl):
                    if error or item is None:
                        emit_json({"id": None, "error": error})
                        continue
                    try:
                        history = history_of(item.get("history"))
                        decision = await route_item(deps, router, item["message"], history)
                        emit_json({"id": item.get("id"), **decision.public()})
                    except ValueError as exc:
                        emit_json({"id": item.get("id"), "error": f"line {number}: {exc}"})

            run(batch)
            return

        decision = run(lambda deps: route_item(deps, build_router(deps, local_only), message, []))
        if as_json:
            emit_json(decision.public())
            return
        out.print(
            f"[bold]{decision.agent}[/] (confidence {decision.confidence:.2f}, "
            f"router {decision.router})"
        )
        out.print(f"need: {decision.primary_need}")
        out.print(f"why: {decision.reasoning}")
        if decision.fallback_reason:
            out.print(f"[yellow]orchestrator not used:[/] {decision.fallback_reason}")

    @main.command("analyze")
    @click.argument("message", required=False)
    @click.option("--jsonl", type=click.File("r"), help='batch: lines {"id", "message", "history"}')
    def analyze_command(message: str | None, jsonl) -> None:
        """Sentiment, upsell signal and loop detection for messages."""
        if jsonl is None and not message:
            raise click.UsageError("give MESSAGE, or --jsonl FILE")

        async def batch(deps: Deps) -> None:
            if jsonl is None:
                emit_json(await analyze_item(deps, message or "", []))
                return
            for number, item, error in read_jsonl(jsonl):
                if error or item is None:
                    emit_json({"id": None, "error": error})
                    continue
                try:
                    history = history_of(item.get("history"))
                    emit_json(
                        {"id": item.get("id"), **await analyze_item(deps, item["message"], history)}
                    )
                except ValueError as exc:
                    emit_json({"id": item.get("id"), "error": f"line {number}: {exc}"})

        run(batch)

    @main.command()
    @click.argument("message")
    @click.option("--conversation", "conversation_id", help="continue this conversation")
    @click.option("--json", "as_json", is_flag=True, help="print the whole result as JSON")
    def ask(message: str, conversation_id: str | None, as_json: bool) -> None:
        """Ask a question as a visitor would: one whole turn (stored in the database).

        Logs go out as JSON lines at COPINES_LOG_LEVEL: on stdout, or on stderr with --json
        (stdout then holds the result alone)."""
        from copines.config import get_settings
        from copines.conversations import start_conversation
        from copines.logs import setup_logging
        from copines.turn import TurnRunner

        undo_logging = setup_logging(
            settings=get_settings(), stream=sys.stderr if as_json else sys.stdout
        )

        async def job(deps: Deps) -> dict:
            runner = TurnRunner(deps)
            try:
                cid = conversation_id
                if cid is None:
                    conversation, _token = await start_conversation(deps.store)
                    cid = conversation.id
                result = await runner.run(cid, message)
                return result.to_public()
            finally:
                await runner.aclose()

        try:
            result = run(job)
        finally:
            undo_logging()
        if as_json:
            emit_json(result)
            return
        out.print(
            f"[bold]{result['agent_name']}[/] ({result['agent']}, confidence "
            f"{result['confidence']:.2f}, router {result['router']}, model {result['model']})"
        )
        out.print(result["response"])
        for s in result["sources"]:
            out.print(f"[dim]source: {s['title']} ({s['filename']}, {s['score']:.3f})[/]")
        out.print(
            f"[dim]conversation {result['conversation_id']} · {result['timings_ms']['total']:.0f} ms"
            f" · sentiment {result['sentiment']} · upsell {result['upsell']}"
            f" · loop {result['loop_detected']}[/]"
        )
        if result["error"]:
            console.print(f"[red]generation failed:[/] {result['error']}")

    @main.command("eval")
    @click.option("--routing", "routing_file", type=click.Path(path_type=Path, exists=True))
    @click.option("--postprocess", "post_file", type=click.Path(path_type=Path, exists=True))
    @click.option("--local-only", is_flag=True, help="score the local router alone")
    @click.option("--json", "as_json", is_flag=True, help="print the full report as JSON")
    def eval_command(
        routing_file: Path | None, post_file: Path | None, local_only: bool, as_json: bool
    ) -> None:
        """Score routing and post-processing on the labelled French sets (exit 1 under target)."""
        routing_file = routing_file or DATA / "routing.jsonl"
        post_file = post_file or DATA / "postprocess.jsonl"
        for path in (routing_file, post_file):
            if not path.exists():
                raise click.UsageError(f"{path} not found; pass --routing/--postprocess FILE")
        report = run(lambda deps: evaluate(deps, routing_file, post_file, local_only))
        if as_json:
            emit_json(report)
        else:
            r, p = report["routing"], report["postprocess"]
            out.print(f"[bold]routing[/] ({r['n']} messages, {r['router']} router)")
            out.print(f"  accuracy {r['accuracy']:.3f}")
            for cls, row in r["f1"].items():
                out.print(
                    f"  {cls:<9} F1 {row['f1']:.3f}  P {row['precision']:.3f}  "
                    f"R {row['recall']:.3f}  (n={row['support']})"
                )
            out.print("  by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in r["by_kind"].items()))
            out.print(
                f"  local router alone: accuracy {r['local_router_accuracy']:.3f}; decides alone "
                f"{r['local_share']:.1%} of turns, {r['local_decided_accuracy']:.3f} accurate there"
            )
            out.print(f"[bold]post-processing[/] ({p['n']} messages)")
            out.print(
                f"  sentiment accuracy {p['sentiment_accuracy']:.3f} · upsell accuracy "
                f"{p['upsell_accuracy']:.3f} (F1 {p['upsell_f1']:.3f}) · loop accuracy "
                f"{p['loop_accuracy']:.3f} (F1 {p['loop_f1']:.3f})"
            )
            for name, t in report["targets"].items():
                mark = "[green]ok[/]" if t["met"] else "[red]under target[/]"
                out.print(f"  {name}: {t['value']:.3f} (target {t['target']:.2f}) {mark}")
        if not report["passed"]:
            sys.exit(1)
