"""Post-processing signals on a labelled set: sentiment, upsell and loop, per class.

    .venv/bin/python bench/postprocess.py FILE [FILE...]    # lines {id, message, history,
                                                            #        sentiment, upsell, loop}
    .venv/bin/python bench/postprocess.py --errors FILE     # also print each wrong line
    .venv/bin/python bench/postprocess.py --lexicon FILE    # the cue lists alone

Runs `copines.postprocess.analyze` offline (local USE embedder, no orchestrator hints) as a
turn does, and prints precision, recall and F1 per class: sentiment's macro F1 over its three
classes, upsell's and loop's F1 on their positive class.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from copines.eval.report import f1_table as scores  # noqa: E402
from copines.postprocess import analyze  # noqa: E402
from copines.providers.embeddings import LocalEmbedder  # noqa: E402

LOOP_PREVIOUS = 4


async def run(path: Path, show_errors: bool) -> dict:
    embedder = LocalEmbedder(threads=2)
    rows = [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]
    sentiment, upsell, loop = [], [], []
    for row in rows:
        earlier = [m["content"] for m in row.get("history") or [] if m.get("role") == "user"]
        earlier = earlier[-LOOP_PREVIOUS:]
        vector = await embedder.embed_one(row["message"])
        previous = [await embedder.embed_one(text) for text in earlier]
        got = analyze(row["message"], vector, previous, earlier=earlier)
        sentiment.append((row["sentiment"], got.sentiment))
        upsell.append((str(row["upsell"]), str(got.upsell)))
        loop.append((str(row["loop"]), str(got.loop)))
        wrong = [
            f"{name} {want}->{have}"
            for name, want, have in (
                ("sentiment", row["sentiment"], got.sentiment),
                ("upsell", row["upsell"], got.upsell),
                ("loop", row["loop"], got.loop),
            )
            if want != have
        ]
        if show_errors and wrong:
            print(f"{row.get('id')}: {'; '.join(wrong)} :: {row['message'][:140]}")
    table = scores(sentiment)
    macro = sum(v["f1"] for v in table.values()) / len(table) if table else 0.0
    return {
        "file": str(path),
        "n": len(rows),
        "sentiment_macro_f1": round(macro, 3),
        "sentiment": table,
        "upsell_f1": scores(upsell).get("True", {}).get("f1", 0.0),
        "upsell": scores(upsell),
        "loop_f1": scores(loop).get("True", {}).get("f1", 0.0),
        "loop": scores(loop),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--errors", action="store_true", help="print each wrong line")
    parser.add_argument(
        "--lexicon", action="store_true", help="the cue lists alone (no learnt model)"
    )
    args = parser.parse_args()
    if args.lexicon:
        import copines.postprocess

        copines.postprocess.default_model = lambda: None
    for path in args.files:
        print(json.dumps(asyncio.run(run(path, args.errors)), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
