"""Commands over the turn: route, analyze, ask, eval, train-router."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from copines.deps import Deps
from copines.eval import history_of
from copines.postprocess import analyze
from copines.routing import Decision, Router, build_router
from copines.routing.local import last_agent
from copines.store.base import Message


def router_for(deps: Deps, local_only: bool = False) -> Router:
    """The cascade the API uses, from the same settings (`local_only`: no orchestrator)."""
    return build_router(deps, deps.chat, local_only=local_only)


async def route_item(deps: Deps, router: Router, message: str, history: list[Message]) -> Decision:
    vector = await deps.embedder.embed_one(message)
    decision, _, _ = await router.route(message, vector, history, last_agent(history, None))
    return decision


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
                router = router_for(deps, local_only)
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

        decision = run(lambda deps: route_item(deps, router_for(deps, local_only), message, []))
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
    @click.option(
        "--part",
        type=click.Choice(["test", "dev", "train"]),
        default="test",
        show_default=True,
        help="which labelled part to score (settings are chosen on dev; test is sealed)",
    )
    @click.option("--local-only", is_flag=True, help="never ask the LLM orchestrator")
    @click.option("--json", "as_json", is_flag=True, help="print the full report as JSON")
    def eval_command(part: str, local_only: bool, as_json: bool) -> None:
        """Score routing and post-processing on a labelled part shipped with the package."""
        from copines.eval.report import evaluate, print_report

        report = run(lambda deps: evaluate(deps, part, local_only=local_only))
        if as_json:
            emit_json(report)
        else:
            print_report(report, out)
        if not report["passed"]:
            sys.exit(1)

    @main.command("train-router")
    @click.option(
        "--knowledge",
        type=click.Path(path_type=Path, exists=True, file_okay=False),
        default=Path("examples/knowledge"),
        show_default=True,
        help="the knowledge the training messages' evidence is computed against",
    )
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option(
        "--out",
        "out_dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="where to write model.npz (default: the package)",
    )
    def train_router(knowledge: Path, seed: int, out_dir: Path | None) -> None:
        """Train the router on the training part, choose its settings on dev."""
        import asyncio

        from copines.config import get_settings
        from copines.routing.train import train

        summary = asyncio.run(
            train(get_settings(), knowledge, seed=seed, out_dir=out_dir, log=console.print)
        )
        out.print(f"chosen on dev: {summary['chosen']}")
