"""Turn benchmark on the embedded default (SQLite + numpy + the local USE embedder), 10k chunks.

    .venv/bin/python bench/turn.py            # ~2 minutes
    .venv/bin/python bench/turn.py --quick    # fewer turns

Measures, and writes to the `turn` section of docs/benchmarks.md:
1. The overhead of a turn: everything but the models' own time (validation, history, embedding,
   routing, retrieval, prompt, post-processing, both writes), p50 and p95, on three paths:
   - local router + expert model: the local router decides, the expert answers through the
     chat client (a local OpenAI-compatible server that answers at once);
   - LLM orchestrator + expert model: every turn asks the orchestrator (router margin out of
     reach), both knowledge bases searched while it thinks;
   - the same with an orchestrator that takes 50 ms (a fast real one takes 300-500 ms): the
     searches of both bases hide behind it, which is what speculative retrieval is for;
   - offline: no model configured, the offline responder answers.
   The overhead is the turn's total minus the time spent waiting on chat calls.
(Routing quality is `copines eval`; routing's own CPU per turn is bench/routing.py.)
Each measured message is embedded for the first time (the embedder's cache is cleared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.fakes.openai_chat import FakeChat, Reply  # noqa: E402

from bench._report import machine, percentile, update_section  # noqa: E402
from copines.config import Settings  # noqa: E402
from copines.conversations import start_conversation  # noqa: E402
from copines.deps import Deps  # noqa: E402
from copines.eval import read_part  # noqa: E402
from copines.providers.embeddings import LocalEmbedder  # noqa: E402
from copines.store.base import ChunkRecord, DocumentRecord  # noqa: E402
from copines.turn import TurnRunner  # noqa: E402

EXAMPLES = ROOT / "examples" / "knowledge"
TARGET_CHUNKS = 10_000
PASSES = 2
ANSWER = (
    "1. Pourquoi : une séquence de bienvenue installe la confiance dès le premier jour.\n"
    "2. Comment : écris cinq emails courts, un tous les deux jours.\n"
    "Ton action pour aujourd'hui : écris l'objet du premier email."
)
ORCHESTRATOR = json.dumps(
    {
        "agent": "audrey",
        "confidence": 0.9,
        "primary_need": "séquence email",
        "secondary_needs": [],
        "reasoning": "automatisation",
        "sentiment": "neutral",
        "upsell": False,
    }
)


async def grow(deps: Deps, db_path: Path, target: int, seed: int = 11) -> None:
    """Add documents made from the ingested chunks (vectors nudged by noise) up to `target`."""
    db = sqlite3.connect(db_path)
    pool = db.execute(
        "SELECT d.owner, d.title, c.heading_path, c.text, c.embedding FROM chunks c "
        "JOIN documents d ON d.id = c.document_id"
    ).fetchall()
    db.close()
    rng = random.Random(seed)
    vocab: dict[str, list[str]] = {}
    for owner, _t, _h, text, _b in pool:
        vocab.setdefault(owner, []).extend(re.findall(r"\w{5,}", text.lower()))
    have, serial = await deps.store.count_chunks(), 0
    while have < target:
        owner = rng.choice([p[0] for p in pool])
        picks = [p for p in rng.sample(pool, 40) if p[0] == owner][:20] or [pool[0]]
        chunks, vectors = [], []
        for position, (_o, _title, heading, text, blob) in enumerate(picks):
            extra = " ".join(rng.sample(vocab[owner], 3))
            chunks.append(ChunkRecord(position, f"{text} {extra}", heading, []))
            vector = np.frombuffer(blob, dtype=np.float32).copy()
            vector += np.asarray([rng.gauss(0, 0.02) for _ in range(len(vector))], np.float32)
            vectors.append(vector / np.linalg.norm(vector))
        serial += 1
        record = DocumentRecord(
            filename=f"bench-{serial:05d}.md",
            title=picks[0][1],
            owner=picks[0][0],
            content_hash=f"bench-{serial}",
            owner_reason="benchmark",
        )
        await deps.store.save_document(record, chunks, np.vstack(vectors), deps.embedder.id)
        have += len(chunks)


def messages() -> list[str]:
    """Visitor messages without history (the routing training part's first turns), each once."""
    return [r["message"] for r in read_part("train", "routing") if not r["history"]]


async def measure(
    settings: Settings, embedder: LocalEmbedder, texts: list[str], turns_per_conversation: int = 3
) -> dict[str, list[float]]:
    deps = await Deps.create(settings, embedder=embedder)
    runner = TurnRunner(deps)
    await runner.prepare()
    out: dict[str, list[float]] = {"overhead": [], "total": []}
    try:
        # Warm-up: connection pools, numpy index, code paths.
        warm, _ = await start_conversation(deps.store)
        for text in ("Bonjour, comment faire un reel ?", "Et un tunnel de vente ?"):
            await runner.run(warm.id, text)
        embedder._cache.clear()  # every measured message is embedded for the first time
        conversation = None
        for i, text in enumerate(texts):
            if i % turns_per_conversation == 0:
                conversation, _ = await start_conversation(deps.store)
            result = await runner.run(conversation.id, text)
            for step, ms in result.timings_ms.items():
                out.setdefault(step, []).append(ms)
        await runner.drain()
    finally:
        await runner.aclose()
        await deps.aclose()
    return out


def serve_fake() -> None:
    """Child process: the fake model server, so it shares no interpreter lock with the turns."""
    with FakeChat() as fake:
        fake.default("bench/orchestrator", Reply(ORCHESTRATOR))
        fake.default("bench/orchestrator-50ms", Reply(ORCHESTRATOR, delay=0.05))
        fake.default("bench/expert", Reply(ANSWER))
        print(fake.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


def start_fake() -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def fmt(values: list[float]) -> str:
    return f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f}"


async def run(quick: bool) -> None:
    texts = messages()
    if quick:
        texts = texts[:40]
    embedder = LocalEmbedder(threads=2)
    embedder.warm_up()
    child, fake_url = start_fake()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db_path = folder / "bench.db"
        common = {"data_dir": folder, "database_url": f"sqlite:///{db_path}"}
        base = Settings(_env_file=None, **common)
        deps = await Deps.create(base, embedder=embedder)
        started = time.perf_counter()
        await deps.ingester().ingest_paths([EXAMPLES])
        await grow(deps, db_path, TARGET_CHUNKS)
        chunks = await deps.store.count_chunks()
        await deps.aclose()
        print(f"store: {chunks} chunks ({time.perf_counter() - started:.0f}s to build)")

        llm = dict(
            llm_base_url=fake_url,
            openrouter_api_key="bench-key",
            orchestrator_model="bench/orchestrator",
            expert_model="bench/expert",
            fallback_model="bench/fallback",
        )
        paths = {
            "local router + expert model": Settings(_env_file=None, **common, **llm),
            "LLM orchestrator + expert model": Settings(
                _env_file=None, **common, **llm, router_decide_alone=2.0
            ),
            "LLM orchestrator taking 50 ms + expert model": Settings(
                _env_file=None,
                **common,
                **{**llm, "orchestrator_model": "bench/orchestrator-50ms"},
                router_decide_alone=2.0,
            ),
            "offline (no model)": base,
        }
        # Two passes over the paths; each path keeps its pass with the lower p95 overhead
        # (the machine is shared: this discards the pass another process disturbed most).
        results: dict[str, dict[str, list[float]]] = {}
        all_p95: dict[str, list[float]] = {}
        for _pass in range(PASSES):
            for name, settings in paths.items():
                r = await measure(settings, embedder, texts)
                all_p95.setdefault(name, []).append(percentile(r["overhead"], 95))
                print(f"{name}: overhead p50/p95 {fmt(r['overhead'])} ms, total {fmt(r['total'])}")
                best = results.get(name)
                if best is None or percentile(r["overhead"], 95) < percentile(best["overhead"], 95):
                    results[name] = r
    assert child.stdin is not None
    child.stdin.close()
    child.wait(10)

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = []
    for name, r in results.items():
        rows.append(
            f"| {name} | {len(r['overhead'])} | {fmt(r['overhead'])} | "
            f"{' / '.join(f'{x:.1f}' for x in all_p95[name])} | {fmt(r['total'])} | "
            f"{'yes' if percentile(r['overhead'], 95) <= 25 else 'no'} |"
        )
    steps = ["load", "route_local", "route", "retrieval", "postprocess", "save"]
    step_rows = []
    for name, r in results.items():
        cells = [f"{percentile(r[s], 50):.1f}" if s in r else "-" for s in steps]
        extra = ""
        if len(r.get("orchestrator", [])) >= 0.5 * len(r["total"]):
            extra = (
                f" (orchestrator {percentile(r['orchestrator'], 50):.1f}, both bases searched "
                f"meanwhile: {percentile(r['retrieval'], 50):.1f}, saved "
                f"{percentile(r['speculative_saved'], 50):.1f})"
            )
        step_rows.append(f"| {name} | " + " | ".join(cells) + f" |{extra} |")
    markdown = f"""
### Turn overhead and routing

{machine()} (load average at the end: {load}, the machine is shared); store: SQLite with {chunks} chunks (the sample knowledge plus variants), local USE
embedder, local reranker. The chat models are a local OpenAI-compatible server answering at once;
**overhead** = the turn's total minus the time spent waiting on chat calls (both HTTP round
trips included in `total`); the model server runs in its own process. Each path ran twice and
keeps its pass with the lower p95 (the machine is shared). With an instant orchestrator, searching both bases is on the
critical path; with one that takes 50 ms it is hidden behind the call (`saved` below is the
time the overlap saved). {len(texts)} first-time messages per path (the routing set's
messages without history), 3 turns per conversation.

| path | turns | overhead p50 / p95 ms | p95 of each pass | total p50 / p95 ms | p95 <= 25 ms |
| --- | ---: | ---: | ---: | ---: | :---: |
{chr(10).join(rows)}

Median per step (ms): `load` = the message's embedding and the history, concurrently.

| path | load | route_local | route | retrieval | postprocess | save | |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
{chr(10).join(step_rows)}

"""
    update_section("turn", markdown)
    print(markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake()
        return
    asyncio.run(run(args.quick))


if __name__ == "__main__":
    main()
