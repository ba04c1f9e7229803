"""Answer quality on a knowledge folder and its questions: retrieval, routing, offline answers.

    .venv/bin/python bench/answers.py                                   # the shipped dev set
    .venv/bin/python bench/answers.py --knowledge DIR --questions FILE  # any set
    .venv/bin/python bench/answers.py --show 5                          # print 5 answers
    .venv/bin/python bench/answers.py --test                            # the sealed test part

Ingests the folder into a temporary SQLite store with the local USE embedder (owner from each
document's front matter, else by filename and content), then for every question
(`{id, query, expert, filename, fact?, pitfall?}`) measures:

- recall@3: the expected document among the expert's 3 passages, hybrid search + rerank (what
  the service uses) against plain dense search over the same vectors (top 3 chunks by cosine,
  same threshold);
- cross-owner leaks: passages of another expert's document (must be 0);
- right expert: the router of a whole turn (`TurnRunner`, offline) picks the expected expert;
- fact in passages / in the answer: the answering fact, folded, found in the right expert's 3
  passages, in her offline answer, and in the answer of the whole turn (whoever the router
  chose); questions without a fact are left out of these;
- pitfall given as advice: a line of a "mistakes / à éviter" section of the knowledge (or the
  question's `pitfall`) in an answer without the "À éviter" label.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from copines.config import Settings  # noqa: E402
from copines.deps import Deps  # noqa: E402
from copines.knowledge.loaders import split_front_matter  # noqa: E402
from copines.providers.embeddings import LocalEmbedder  # noqa: E402
from copines.providers.offline import PITFALL_LABEL, OfflineResponder  # noqa: E402
from copines.text import fold  # noqa: E402

MISSES = "--misses" in sys.argv
ROUTING_MISSES = "--routing-misses" in sys.argv
PER_DOCUMENT = (
    int(sys.argv[sys.argv.index("--per-document") + 1]) if "--per-document" in sys.argv else 0
)
EVAL = ROOT / "src" / "copines" / "eval"
DEV = (ROOT / "examples" / "knowledge", EVAL / "dev" / "questions_sample.jsonl")
TEST = (EVAL / "test" / "knowledge", EVAL / "test" / "questions.jsonl")

# Written independently of the product's own pitfall detection (which it checks).
_PITFALL_HEADING = re.compile(
    r"^#{1,6}\s+.*(erreur|a eviter|piege|ne pas faire|ne jamais faire|mistake|faux pas|"
    r"mauvaise pratique|idees recues|fausses bonnes)",
)


def norm(text: str) -> str:
    """Folded, without markup or punctuation, spaces squeezed (numbers keep their digits)."""
    text = fold(text).replace("\u202f", " ").replace("\xa0", " ")
    text = re.sub(r"[*_`#>\[\]«»\"“”()]", " ", text)
    text = re.sub(r"(?<=\d) (?=\d{3}\b)", "", text)  # "1 290" -> "1290"
    text = re.sub(r"[^\w%€+×x/.,:;'-]+", " ", text)
    return " ".join(text.replace(" ,", ",").split())


def holds(fact: str, text: str) -> bool:
    """The fact is in the text as written (folded, markup and spacing aside)."""
    f = norm(fact).strip(" .;:")
    return bool(f) and f in norm(text)


def pitfall_lines(folder: Path) -> list[str]:
    """Every line under a "mistakes / à éviter" heading of the knowledge's documents."""
    lines: list[str] = []
    for path in sorted(folder.glob("*.md")):
        _, text = split_front_matter(path.read_text(encoding="utf-8"))
        inside, level = False, 0
        for line in text.splitlines():
            heading = re.match(r"^(#{1,6})\s", line)
            if heading:
                depth = len(heading.group(1))
                if _PITFALL_HEADING.match(fold(line)):
                    inside, level = True, depth
                elif inside and depth <= level:
                    inside = False
                continue
            body = re.sub(r"^\s*([-*+]|\d+[.)])\s+(\[[ xX]?\]\s*)?", "", line).strip()
            if inside and len(body.split()) >= 4:
                lines.append(norm(body).strip(" .;:"))
    return lines


def defects(answer: str) -> list[str]:
    """What a visitor cannot use: checklist boxes, a note for the team, a lead-in (a paragraph
    ending with ':') whose list is not there, a source named in the text."""
    found = []
    if re.search(r"\[[ xX]?\]", answer):
        found.append("checklist")
    if re.search(r"note interne|\btodo\b|fixme", fold(answer)):
        found.append("internal note")
    paragraphs = answer.split("\n\n")
    for i, paragraph in enumerate(paragraphs):
        following = paragraphs[i + 1] if i + 1 < len(paragraphs) else ""
        if paragraph.rstrip().endswith(":") and not re.match(r"^(\d+\.|-|\*\*)", following):
            found.append("lead-in alone")
    if re.search(r"(^|\n)\W*sources? :|hors ligne|relis la fiche", fold(answer)):
        found.append("source or offline note")
    return found


def advises_pitfall(answer: str, pitfalls: list[str]) -> list[str]:
    """The answer's lines that give a pitfall without the label."""
    bad = []
    for line in answer.splitlines():
        if PITFALL_LABEL.strip().rstrip(":").strip() in line:
            continue
        folded = norm(line)
        for p in pitfalls:
            # The first words of the pitfall line, enough to say it is the same line.
            head = " ".join(p.split()[:8])
            if len(head) > 15 and head in folded:
                bad.append(line.strip())
                break
    return bad


async def run(
    knowledge: Path, questions_file: Path, show: int, threshold: float | None = None
) -> dict:
    questions = [json.loads(x) for x in questions_file.read_text().splitlines() if x.strip()]
    pitfalls = pitfall_lines(knowledge)
    embedder = LocalEmbedder(threads=2)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None,
            data_dir=Path(tmp),
            database_url=f"sqlite:///{tmp}/bench.db",
            match_threshold=threshold,
        )
        deps = await Deps.create(settings, embedder=embedder)
        try:
            results = await deps.ingester().ingest_paths([knowledge])
            skipped = [r for r in results if r.skipped]
            if skipped:
                print("skipped:", [(r.filename, r.detail) for r in skipped])
            from copines.turn import TurnRunner

            if PER_DOCUMENT:
                deps.retriever.per_document = PER_DOCUMENT
            runner = TurnRunner(deps)
            await runner.prepare()
            offline = OfflineResponder(max_words=settings.max_answer_words)
            owners = {d.filename: d.owner for d in await deps.store.list_documents()}
            stats = _Stats()
            for i, q in enumerate(questions):
                await _one(deps, runner, offline, q, owners, pitfalls, stats, show=i < show)
            await runner.aclose()
        finally:
            await deps.aclose()
    return stats.report(len(questions), len(owners))


class _Stats:
    def __init__(self) -> None:
        self.n = {
            k: 0
            for k in (
                "hybrid",
                "dense",
                "leaks",
                "expert",
                "expert_base",
                "facts",
                "in_passages",
                "in_answer",
                "in_answer_given_passages",
                "in_turn",
                "pitfall",
                "retrieval_q",
                "words",
                "defects",
            )
        }
        self.pitfall_examples: list[str] = []
        self.defect_examples: list[str] = []
        self.misses: list[str] = []

    def report(self, questions: int, documents: int) -> dict:
        n = self.n
        facts = n["facts"] or 1
        return {
            "documents": documents,
            "questions": questions,
            "recall@3 hybrid": round(n["hybrid"] / max(n["retrieval_q"], 1), 3),
            "recall@3 dense-only": round(n["dense"] / max(n["retrieval_q"], 1), 3),
            "cross-owner leaks": n["leaks"],
            "right expert": round(n["expert"] / questions, 3),
            "right expert (shared document: either expert)": round(n["expert_base"] / questions, 3),
            "questions with a fact": n["facts"],
            "fact in passages": round(n["in_passages"] / facts, 3),
            "fact in answer (right expert)": round(n["in_answer"] / facts, 3),
            "fact in answer when in passages": round(
                n["in_answer_given_passages"] / max(n["in_passages"], 1), 3
            ),
            "fact in answer (whole turn)": round(n["in_turn"] / facts, 3),
            "answers giving a pitfall as advice": n["pitfall"],
            "mean words of an offline answer": round(n["words"] / questions),
            "answers with a defect (checklist, note, lone lead-in, source)": n["defects"],
            "defect examples": self.defect_examples[:5],
            "pitfall examples": self.pitfall_examples[:5],
        }


async def _one(deps, runner, offline, q, owners, pitfalls, stats: _Stats, show: bool) -> None:
    expert, query, fact = q["expert"], q["query"], q.get("fact")
    n = stats.n
    hybrid = await deps.retriever.search(expert, query, k=3) if expert in deps.experts else None
    if hybrid is not None and q.get("filename"):
        n["retrieval_q"] += 1
        vector = await deps.embedder.embed_one(query)
        dense_ids = await deps.store.dense_search(expert, vector, 3, deps.retriever.threshold)
        dense = await deps.store.get_passages(expert, [c for c, _ in dense_ids], vector)
        n["hybrid"] += q["filename"] in {p.filename for p in hybrid.passages}
        n["dense"] += q["filename"] in {p.filename for p in dense}
        n["leaks"] += sum(
            1
            for p in [*hybrid.passages, *dense]
            if owners.get(p.filename) not in (expert, "shared")
        )
    conversation = "bench-" + secrets.token_hex(6)
    await deps.store.create_conversation(conversation, "x")
    turn = await runner.run(conversation, query)
    n["expert"] += turn.agent == expert
    # A shared document is in both experts' bases: either expert answers it alike.
    shared = owners.get(q.get("filename")) == "shared"
    n["expert_base"] += turn.agent == expert or (shared and turn.agent in deps.experts)
    if ROUTING_MISSES and turn.agent != expert:
        print(
            f"=== ROUTED {q['id']} {expert} -> {turn.agent} ({turn.router}, "
            f"{turn.confidence:.2f}) [{q.get('filename')}] {query}"
        )
    answer = (
        await offline.compose(deps.experts[expert], query, hybrid.passages, deps.embedder)
        if hybrid
        else ""
    )
    n["words"] += len(answer.split())
    flaws = defects(answer) + defects(turn.response)
    if flaws:
        n["defects"] += 1
        stats.defect_examples.append(f"{q['id']}: {', '.join(sorted(set(flaws)))}")
    given = pitfalls + ([norm(q["pitfall"])] if q.get("pitfall") else [])
    bad = advises_pitfall(answer, given) + advises_pitfall(turn.response, given)
    if bad:
        n["pitfall"] += 1
        stats.pitfall_examples.append(f"{q['id']}: {bad[0][:100]}")
    if fact and hybrid is not None:
        n["facts"] += 1
        in_passages = any(holds(fact, p.text) for p in hybrid.passages)
        in_answer = holds(fact, answer)
        n["in_passages"] += in_passages
        n["in_answer"] += in_answer
        n["in_answer_given_passages"] += in_passages and in_answer
        n["in_turn"] += holds(fact, turn.response)
        if in_passages and not in_answer:
            stats.misses.append(q["id"])
            if MISSES:
                print(f"=== MISS {q['id']} {query}\n    fact: {fact}\n{answer}\n")
    if show:
        print(f"--- {q['id']} [{expert} -> {turn.agent}] {query}")
        if fact:
            print(f"    fact: {fact}")
        print(answer)
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--knowledge", type=Path)
    parser.add_argument("--questions", type=Path)
    parser.add_argument("--test", action="store_true", help="the sealed test part")
    parser.add_argument("--per-document", type=int, help="passages of one document at most")
    parser.add_argument(
        "--threshold", type=float, help="dense similarity floor (default: the embedder's)"
    )
    parser.add_argument("--show", type=int, default=0, help="print this many answers")
    parser.add_argument(
        "--routing-misses",
        action="store_true",
        help="print the questions the whole turn gives to another than the expected expert",
    )
    parser.add_argument(
        "--misses",
        action="store_true",
        help="print the answers that miss a fact their passages hold",
    )
    args = parser.parse_args()
    knowledge, questions = TEST if args.test else DEV
    knowledge = args.knowledge or knowledge
    questions = args.questions or questions
    report = asyncio.run(run(knowledge, questions, args.show, args.threshold))
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
