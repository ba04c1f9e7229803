"""Routing: the CPU one decision costs, and the quality figures of docs/quality.md.

1. CPU: the local router's decision (safety rules, features, knowledge-base evidence from both
   bases, the classifier) for the first turns of the training part, the message's embedding
   given (the turn computes it anyway). Process CPU time per decision, p50 / p95 / mean.
2. `--quality`: `copines eval` on the dev and test parts, with the shipped model and with the
   one trained without knowledge-base evidence, and the test part's reliability diagram drawn
   to docs/reliability.png (Pillow, from the test extra).

The store is a temporary SQLite file holding the sample knowledge (examples/knowledge).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench._report import machine, percentile, update_section  # noqa: E402
from copines.config import Settings  # noqa: E402
from copines.deps import Deps  # noqa: E402
from copines.eval import history_of, read_part  # noqa: E402
from copines.eval.report import evaluate  # noqa: E402
from copines.routing import build_router  # noqa: E402
from copines.routing.classifier import Model  # noqa: E402

EXAMPLES = ROOT / "examples" / "knowledge"
PNG = ROOT / "docs" / "reliability.png"


async def cpu(deps: Deps, limit: int) -> dict[str, float]:
    router = build_router(deps, None, local_only=True)
    await router.prepare()
    rows = [r for r in read_part("train", "routing")][:limit]
    vectors = await deps.embedder.embed([r["message"] for r in rows])
    histories = [history_of(r.get("history")) for r in rows]
    for row, vector, history in zip(rows[:20], vectors, histories, strict=False):  # warm-up
        await router.route(row["message"], vector, history)
    times = []
    for row, vector, history in zip(rows, vectors, histories, strict=True):
        for m in history:  # the history's messages are in the embedder's cache in a turn
            if m.role == "user":
                await deps.embedder.embed_one(m.content)
        started = time.process_time()
        await router.route(row["message"], vector, history)
        times.append((time.process_time() - started) * 1000)
    return {
        "n": len(times),
        "p50": percentile(times, 50),
        "p95": percentile(times, 95),
        "mean": sum(times) / len(times),
    }


def draw_reliability(bins: list[dict], path: Path, title: str) -> None:
    """Accuracy against confidence per bin, with the diagonal; bar width = the bin."""
    from PIL import Image, ImageDraw

    size, pad = 520, 60
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    inner = size - 2 * pad

    def xy(x: float, y: float) -> tuple[float, float]:
        return pad + x * inner, size - pad - y * inner

    draw.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        draw.text((xy(tick, 0)[0] - 8, size - pad + 6), f"{tick:.1f}", fill="black")
        draw.text((pad - 30, xy(0, tick)[1] - 6), f"{tick:.1f}", fill="black")
    total = sum(b["n"] for b in bins) or 1
    for b in bins:
        draw.rectangle(
            [xy(b["lo"], b["accuracy"]), xy(b["hi"], 0)], fill="#9B7BB8", outline="white"
        )
        x, y = xy(b["confidence"], b["accuracy"])  # the bin's mean confidence
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill="black")
        draw.text(
            (xy(b["lo"], 0)[0] + 2, xy(0, b["accuracy"])[1] - 14),
            f"{b['n'] / total:.0%}",
            fill="black",
        )
    draw.line([xy(0, 0), xy(1, 1)], fill="#6B7280", width=2)
    draw.line([xy(0.7, 0), xy(0.7, 1)], fill="#C0392B", width=1)
    draw.text((pad, 18), title, fill="black")
    draw.text((size // 2 - 40, size - 24), "confidence", fill="black")
    draw.text((6, pad - 20), "accuracy", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


async def quality(deps: Deps) -> dict:
    no_evidence = Model.load(ROOT / "src" / "copines" / "routing" / "model-no-evidence.npz")
    out = {}
    for part in ("dev", "test"):
        out[part] = await evaluate(deps, part, local_only=True)
        out[f"{part}-no-evidence"] = await evaluate(deps, part, local_only=True, model=no_evidence)
    return out


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None, database_url=f"sqlite:///{tmp}/bench.db", data_dir=Path(tmp)
        )
        deps = await Deps.create(settings)
        try:
            await deps.ingester().ingest_paths([EXAMPLES], owner="auto")
            if args.quality:
                reports = await quality(deps)
                test = reports["test"]["routing"]
                draw_reliability(
                    test["calibration"]["bins"],
                    PNG,
                    f"Routing, sealed test part ({test['calibration']['n']} classifier "
                    f"decisions), ECE {test['calibration']['ece']:.3f}",
                )
                Path(args.quality).write_text(json.dumps(reports, ensure_ascii=False, indent=1))
                print(f"reports written to {args.quality}, diagram to {PNG}")
                return
            figures = await cpu(deps, args.limit)
        finally:
            await deps.aclose()
    print(json.dumps(figures))
    markdown = f"""
### Routing CPU per decision

{machine()}; store: SQLite with the sample knowledge; local USE embedder. The local router's
decision (safety rules, features, knowledge-base evidence from both bases, the classifier) for
{figures["n"]} first turns and follow-ups of the training part, the message's embedding given
(the turn computes it for retrieval anyway). Process CPU time per decision:

| p50 ms | p95 ms | mean ms | target |
| ---: | ---: | ---: | --- |
| {figures["p50"]:.2f} | {figures["p95"]:.2f} | {figures["mean"]:.2f} | well under 5 ms |
"""
    update_section("routing", markdown)
    print(markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=400, help="decisions measured")
    parser.add_argument("--quality", metavar="JSON", help="write the eval reports here")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
