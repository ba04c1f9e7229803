"""Postgres + pgvector search: p50/p95 at 10k and 100k chunks, HNSW and exact, recall@20 of HNSW
against exact search, and the HNSW build time. Writes the `postgres` section of
docs/benchmarks.md.

    python bench/postgres.py [--sizes 10000 100000] [--queries 120] [--no-write]

Data: the sample knowledge's sentences (and pairs of them) are embedded for real with the bundled
USE model; each chunk's vector is a mix of 2 to 5 of those embeddings from one document (now and
then one from another document), plus a little noise, so that 100k chunks keep the topical
clusters of real passages without embedding 100k texts (45 texts/s here). Queries are real visitor
messages (the training part of copines.eval), embedded for real. Postgres: DATABASE_URL's server when set (a
scratch database is created and dropped), as it is configured; else pgserver (Postgres 16 +
pgvector) in a temp folder, with shared_buffers raised from initdb's 128MB to 1GB (restarted
once): at 100k chunks the HNSW indexes alone take 260 MB, and a search that reads a third of its
pages from the OS cache measures the server's configuration, not the store. A production server
is sized the same way (Postgres' usual advice, 25% of RAM; Supabase sets it per compute size).

Tried on 2026-11-25 (same machine, pgvector 0.6.2, load average ~6), with ONE index for every
owner (the owner filter applied after the scan): at 100k chunks recall@20 stayed at 0.943 with
ef_search=1000 (p95 57 ms); m=32, ef_construction=128 built in 741 s and reached 0.978 at 1000
(p95 131 ms). One partial index per owner (migration 0003) reached 0.988 at ef_search=200.
Later the same day (load average ~4.5), on the audrey index alone (42k chunks), ef_construction=128
instead of 64 gave recall@20 0.974 / 0.983 at ef_search 100 / 120 against 0.973 / 0.981: no gain
worth twice the build. The plans (EXPLAIN ANALYZE, BUFFERS) use both partial indexes, planned for
the owner's literal value (the SQL function is inlined; nothing is prepared, so no generic plan).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench._report import machine, percentile, update_section  # noqa: E402
from copines.config import Settings  # noqa: E402
from copines.eval import read_part  # noqa: E402
from copines.experts import SHARED  # noqa: E402
from copines.providers.embeddings import LocalEmbedder  # noqa: E402
from copines.store.postgres import PostgresStore  # noqa: E402
from copines.store.postgres_vectors import WALK  # noqa: E402

CACHE = Path("/tmp/copines-bench-cache")
EXPERTS = ("audrey", "carole")
PER_DOCUMENT, POOL = 50, 30  # chunks per document; real passages a document draws on
SUBJECT, NOISE = 0.5, 0.2  # norms of the document's subject and of a chunk's noise
EF_SWEEP = (100, 120, 140, 160, 200, 400)
SHARED_BUFFERS = "1GB"  # for the pgserver the benchmark starts (see above)


def owner_of(name: str) -> str:
    prefix = name.split("-", 1)[0]
    return prefix if prefix in EXPERTS else "shared"


def units() -> list[tuple[str, str, str]]:
    """(document, owner, text): the sample knowledge's sentences and pairs of neighbours."""
    out = []
    for path in sorted((ROOT / "examples" / "knowledge").glob("*.md")):
        text = re.sub(r"[#*_`>|-]+", " ", path.read_text(encoding="utf-8"))
        sentences = [
            s.strip() for s in re.split(r"(?<=[.!?:])\s+|\n+", text) if len(s.strip()) >= 25
        ]
        owner = owner_of(path.stem)
        out += [(path.stem, owner, s) for s in sentences]
        out += [
            (path.stem, owner, f"{a} {b}") for a, b in zip(sentences, sentences[1:], strict=False)
        ]
    return out


def embed_cached(embedder: LocalEmbedder, texts: list[str], label: str) -> np.ndarray:
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"{label}-{key}.npy"
    if path.exists():
        return np.load(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    vectors = np.concatenate(
        [embedder.embed_sync(texts[i : i + 64]) for i in range(0, len(texts), 64)]
    )
    np.save(path, vectors)
    return vectors


def make_chunks(
    base: list[tuple[str, str, str]], vectors: np.ndarray, n: int, seed: int
) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """n chunks in documents of 50: (document names, owners, texts, vectors).

    A document draws a pool of 30 of its owner's real passages and a subject of its own (a random
    direction: what it says that the sample does not); each chunk mixes 2 to 5 of the pool's
    embeddings, the subject and a little noise. So 100k chunks are 2,000 documents of one owner
    each, as in a real knowledge base, rather than 100k re-mixes of the 24 sample files.
    """
    rng = np.random.default_rng(seed)
    by_owner: dict[str, list[int]] = {}
    for i, (_, owner, _) in enumerate(base):
        by_owner.setdefault(owner, []).append(i)
    owners = sorted(by_owner)
    share = np.array([len(by_owner[o]) for o in owners], dtype=float)
    share /= share.sum()
    dim = vectors.shape[1]
    names, chunk_owners, texts = [], [], []
    out = np.empty((n, dim), dtype=np.float32)
    pool: list[int] = []
    subject = np.zeros(dim)
    owner = owners[0]
    for j in range(n):
        if j % PER_DOCUMENT == 0:
            owner = owners[rng.choice(len(owners), p=share)]
            pool = list(rng.choice(by_owner[owner], size=POOL, replace=False))
            subject = rng.normal(size=dim)
            subject /= np.linalg.norm(subject)
        picked = list(rng.choice(pool, size=int(rng.integers(2, 6)), replace=False))
        mix = (vectors[picked] * rng.uniform(0.5, 1.0, size=(len(picked), 1))).sum(axis=0)
        mix /= np.linalg.norm(mix)
        noise = rng.normal(size=dim)
        mix = mix + SUBJECT * subject + NOISE * noise / np.linalg.norm(noise)
        out[j] = mix / np.linalg.norm(mix)
        names.append(f"bench-{seed}-{j // PER_DOCUMENT}")
        chunk_owners.append(owner)
        texts.append(" ".join(base[i][2] for i in picked))
    return names, chunk_owners, texts, out


def queries(limit: int) -> list[str]:
    messages = []
    for kind in ("routing", "postprocess"):
        for row in read_part("train", kind):
            message = row.get("message")
            if message and message not in messages:
                messages.append(message)
    return messages[:limit]


async def load(store: PostgresStore, names, owners, texts, vectors, embedder_id: str) -> None:
    """Append chunks with COPY (documents grouped by name), as an ingest would store them."""
    async with store._tx() as conn:
        await store.wait_unlimited(conn)  # a bulk load: no statement timeout
        if store.dim is None:
            await store._claim_embedder(conn, embedder_id, vectors.shape[1])
        # Bulk load first, index after (as the timed build below does).
        for name in await store.vector_indexes(conn):
            await conn.execute(sql.SQL("DROP INDEX copines.{}").format(sql.Identifier(name)))
        doc_ids: dict[str, int] = {}
        for name, owner in dict(zip(names, owners, strict=True)).items():
            row = await (
                await conn.execute(
                    "INSERT INTO copines.documents (filename, title, agent_owner, content_hash) "
                    "VALUES (%s, %s, %s, 'bench') ON CONFLICT (filename) DO UPDATE "
                    "SET title = excluded.title RETURNING id",
                    (name, name, owner),
                )
            ).fetchone()
            doc_ids[name] = row["id"]
        async with (
            conn.cursor() as cur,
            cur.copy(
                "COPY copines.document_chunks (document_id, agent_owner, position, content, "
                "embedding, embedder) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["int8", "text", "int4", "text", "vector", "text"])
            for i, name in enumerate(names):
                await copy.write_row(
                    (doc_ids[name], owners[i], i, texts[i], vectors[i], embedder_id)
                )
    await store.get_embedder_id()
    store._owner_counts_at = 0.0


async def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = await fn(*args, **kwargs)
    return (time.perf_counter() - t0) * 1000, result


async def measure(store: PostgresStore, qvecs: np.ndarray, terms: list[list[str]]) -> dict:
    """Latency and recall of each plan over every query and expert."""
    work = [(e, v) for e in EXPERTS for v in qvecs]
    for expert, v in work[:10]:  # warm the caches and the pool
        await store.match_chunks(expert, v, 20, -1.0, exact=True)
        await store.walk_owner_indexes(expert, v, 20, -1.0, 100)
    exact_ms, truth = [], []
    for expert, v in work:
        ms, rows = await timed(store.match_chunks, expert, v, 20, -1.0, exact=True)
        exact_ms.append(ms)
        truth.append({c for c, _ in rows})
    result: dict = {"exact": exact_ms, "hnsw": {}}
    for ef in EF_SWEEP:
        times, hits = [], 0
        for (expert, v), want in zip(work, truth, strict=True):
            ms, rows = await timed(store.walk_owner_indexes, expert, v, 20, -1.0, ef)
            times.append(ms)
            hits += len(want & {c for c, _ in rows})
        result["hnsw"][ef] = (times, hits / sum(len(t) for t in truth))
    store._owner_counts_at = 0.0
    auto, hits = [], 0
    for (expert, v), want in zip(work, truth, strict=True):
        ms, rows = await timed(store.dense_search, expert, v, 20, -1.0)
        auto.append(ms)
        hits += len(want & {c for c, _ in rows})
    plan = await store.search_plan("audrey")
    result["auto"] = (auto, hits / sum(len(t) for t in truth), plan)
    result["server"] = await server_times(store, work, plan)
    keyword = []
    for (expert, _), words in zip(work, terms * len(EXPERTS), strict=True):
        ms, _ = await timed(store.keyword_search, expert, words, 20)
        keyword.append(ms)
    result["keyword"] = keyword
    return result


async def server_times(
    store: PostgresStore, work: list[tuple[str, np.ndarray]], plan: tuple[bool, int]
) -> list[float]:
    """The server's own execution time of the store's default search (EXPLAIN ANALYZE): the
    exact copines.match_chunks(), or the longer of the two HNSW walks (they run at once)."""
    exact, ef = plan
    settings = {"jit": "off", **({"enable_indexscan": "off"} if exact else {"hnsw.ef_search": ef})}
    times = []

    async def explain(conn, query: str, params: dict) -> float:
        row = await (
            await conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params)
        ).fetchone()
        return float(row["QUERY PLAN"][0]["Execution Time"])

    async with store._tx() as conn:
        for name, value in settings.items():
            await conn.execute("SELECT set_config(%s, %s, true)", (name, str(value)))
        for expert, v in work:
            vector = np.asarray(v, dtype=np.float32)
            if exact:
                times.append(
                    await explain(
                        conn,
                        "SELECT id, similarity "
                        "FROM copines.match_chunks(%(vector)s::vector, %(expert)s, -1.0, 20)",
                        {"vector": vector, "expert": expert},
                    )
                )
            else:
                walks = [
                    await explain(conn, WALK, {"vector": vector, "owner": owner, "limit": 20})
                    for owner in (expert, SHARED)
                ]
                times.append(max(walks))
    return times


async def turn_overhead(
    embedder: LocalEmbedder, base: list, base_vectors: np.ndarray, size: int, quick: bool
) -> tuple[int, dict[str, dict[str, list[float]]]]:
    """bench/turn.py's overhead measure, on Postgres: the sample knowledge grown to `size`."""
    import tempfile

    from tests._postgres import fresh_database

    from bench.turn import EXAMPLES, start_fake
    from bench.turn import measure as measure_turns
    from bench.turn import messages as turn_messages
    from copines.deps import Deps

    texts = turn_messages()[: 40 if quick else None]
    results = {}
    # The fake model server runs in a child process, as in bench/turn.py: in this one it would
    # take the interpreter lock from the turns it serves.
    child, fake_url = start_fake()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(server_url()) as url,
    ):
        common = {"data_dir": Path(tmp), "database_url": url}
        deps = await Deps.create(Settings(_env_file=None, **common), embedder=embedder)  # type: ignore[call-arg]
        try:
            await deps.ingester().ingest_paths([EXAMPLES])
            store = deps.store
            assert isinstance(store, PostgresStore)
            have = await store.count_chunks()
            if size > have:
                names, owners, chunk_texts, vectors = make_chunks(
                    base, base_vectors, size - have, 7
                )
                await load(store, names, owners, chunk_texts, vectors, embedder.id)
                async with store._tx() as conn:
                    await store.build_vector_indexes(conn)
                async with store._tx() as conn:
                    await store.wait_unlimited(conn)
                    await conn.execute("ANALYZE copines.document_chunks")
            chunks = await store.count_chunks()
        finally:
            await deps.aclose()
        llm = dict(
            llm_base_url=fake_url,
            openrouter_api_key="bench-key",
            orchestrator_model="bench/orchestrator",
            expert_model="bench/expert",
            fallback_model="bench/fallback",
        )
        paths = {
            "local router + expert model": Settings(_env_file=None, **common, **llm),  # type: ignore[call-arg]
            "LLM orchestrator + expert model": Settings(  # type: ignore[call-arg]
                _env_file=None, **common, **llm, router_decide_alone=2.0
            ),
        }
        try:
            for name, settings in paths.items():
                results[name] = await measure_turns(settings, embedder, texts)
                print(f"turn on Postgres, {name}: overhead {ms(results[name]['overhead'])} ms")
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=10)
    return chunks, results


def server_url() -> str:
    """DATABASE_URL's server as it is, or the tests' pgserver with shared_buffers raised."""
    import psycopg
    from tests import _postgres
    from tests._postgres import postgres_url

    external = os.environ.get("DATABASE_URL")
    url = postgres_url(external)
    server = _postgres._server
    if external or server is None:
        return url
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SHOW shared_buffers").fetchone()[0] == SHARED_BUFFERS:
            return url
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{SHARED_BUFFERS}'")
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user)
    return url


def ms(values: list[float]) -> str:
    return f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f}"


async def run(args: argparse.Namespace) -> str:
    from tests._postgres import fresh_database

    from copines.text import search_terms

    embedder = LocalEmbedder(threads=2)
    embedder.warm_up()
    base = units()
    t0 = time.perf_counter()
    base_vectors = embed_cached(embedder, [u[2] for u in base], "units")
    messages = queries(args.queries)
    qvecs = embed_cached(embedder, messages, "queries")
    print(
        f"{len(base)} real embeddings, {len(messages)} queries ({time.perf_counter() - t0:.0f} s)"
    )
    terms = [search_terms(m) for m in messages]

    rows, builds = [], []
    with fresh_database(server_url()) as url:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=url,
            pg_pool_max_size=2,
            pg_hnsw_m=args.m,
            pg_hnsw_ef_construction=args.ef_construction,
        )
        store = PostgresStore(url, settings)
        await store.open()
        version = ".".join(map(str, store.pgvector_version))
        try:
            async with store._tx() as conn:
                server = (await (await conn.execute("SHOW server_version")).fetchone())[
                    "server_version"
                ]
                shared_buffers = (await (await conn.execute("SHOW shared_buffers")).fetchone())[
                    "shared_buffers"
                ]
            loaded = 0
            for size in sorted(args.sizes):
                names, owners, texts, vectors = make_chunks(base, base_vectors, size - loaded, size)
                t1 = time.perf_counter()
                await load(store, names, owners, texts, vectors, embedder.id)
                loaded = size
                async with store._tx() as conn:
                    t2 = time.perf_counter()
                    await store.build_vector_indexes(conn)  # one per owner
                build_s = time.perf_counter() - t2
                async with store._tx() as conn:
                    await store.wait_unlimited(conn)
                    await conn.execute("ANALYZE copines.document_chunks")
                    await conn.execute("ANALYZE copines.documents")
                print(f"{size} chunks: load {t2 - t1:.0f} s, HNSW build {build_s:.1f} s")
                builds.append((size, build_s))
                result = await measure(store, qvecs, terms)
                rows.append((size, result))
                for ef, (times, recall) in result["hnsw"].items():
                    print(f"  ef_search={ef}: {ms(times)} ms, recall@20 {recall:.3f}")
                print(f"  exact: {ms(result['exact'])} ms; keyword {ms(result['keyword'])} ms")
                auto_times, auto_recall, plan = result["auto"]
                print(f"  store plan {plan}: {ms(auto_times)} ms, recall {auto_recall:.3f}")
                print(f"  server execution (EXPLAIN ANALYZE): {ms(result['server'])} ms")
        finally:
            await store.close()

    turns: tuple[int, dict] | None = None
    if args.turn_chunks:
        turns = await turn_overhead(embedder, base, base_vectors, args.turn_chunks, args.quick)

    load_average = os.getloadavg()[1]
    lines = [
        f"Machine: {machine()}, load average {load_average:.1f} during the run (shared); Postgres {server}, pgvector {version} (pgserver), "
        f"{len(base)} real USE embeddings mixed into chunk vectors (512 dims), "
        f"{len(messages)} real visitor questions x {len(EXPERTS)} experts per figure; "
        f"shared_buffers {shared_buffers}; latency through `PostgresStore` (pool; each "
        "query and its SET LOCAL in one pipeline, one round trip), top 20, owner filter = "
        "the expert's + shared chunks; the HNSW rows walk the expert's and the shared "
        "index at once, on two connections.",
        "",
        "| chunks | plan | p50 / p95 ms | recall@20 |",
        "| --- | --- | --- | --- |",
    ]
    for size, result in rows:
        lines.append(f"| {size:,} | exact (no index scan) | {ms(result['exact'])} | 1.000 |")
        for ef, (times, recall) in result["hnsw"].items():
            lines.append(f"| {size:,} | HNSW, ef_search={ef} | {ms(times)} | {recall:.3f} |")
        auto_times, auto_recall, plan = result["auto"]
        label = "exact" if plan[0] else f"HNSW ef_search={plan[1]}"
        lines.append(
            f"| {size:,} | **store default** ({label}) | {ms(auto_times)} | {auto_recall:.3f} |"
        )
        lines.append(
            f"| {size:,} | the same, server execution only (EXPLAIN ANALYZE; HNSW: the "
            "longer walk) "
            f"| {ms(result['server'])} | |"
        )
        lines.append(
            f"| {size:,} | keyword (French tsvector, GIN, row budget) | {ms(result['keyword'])} | |"
        )
    lines.append("")
    for size, result in rows:
        reached = [(ef, times) for ef, (times, recall) in result["hnsw"].items() if recall >= 0.98]
        if reached:
            ef, times = reached[0]
            lines.append(
                f"- {size:,} chunks: recall@20 >= 0.98 from ef_search={ef} "
                f"(p95 {percentile(times, 95):.1f} ms); exact p95 "
                f"{percentile(result['exact'], 95):.1f} ms."
            )
        else:
            best = max(result["hnsw"].items(), key=lambda item: item[1][1])
            lines.append(
                f"- {size:,} chunks: recall@20 stays under 0.98 up to ef_search={best[0]} "
                f"({best[1][1]:.3f}, p95 {percentile(best[1][0], 95):.1f} ms); exact p95 "
                f"{percentile(result['exact'], 95):.1f} ms."
            )
    lines += [
        "",
        f"HNSW build, every owner's index (m={args.m}, ef_construction={args.ef_construction}, "
        f"maintenance_work_mem {Settings(_env_file=None).pg_maintenance_work_mem}): "  # type: ignore[call-arg]
        + ", ".join(f"{s:,} chunks {b:.1f} s" for s, b in builds)
        + ".",
        "",
        "Targets: search p95 <= 10 ms at 100k chunks with recall@20 >= 0.98. Defaults: exact "
        f"search up to {Settings(_env_file=None).pg_exact_search_below:,} chunks (an expert's "  # type: ignore[call-arg]
        "+ shared), else one HNSW index per owner (partial, `WHERE agent_owner = ...`): the "
        "expert's and the shared one are each walked unfiltered, both at once on two "
        "connections (the wait is the longer walk), at ef_search = "
        f"{Settings(_env_file=None).pg_hnsw_ef_search} (the lowest with recall@20 >= 0.98 "  # type: ignore[call-arg]
        "at 100k, with a little margin). A search is one round trip: its SET LOCAL settings "
        "(statement and lock timeouts included) and the query travel in one pipeline with a "
        "single Sync, the vector in binary; reads and single-statement writes run in "
        "autocommit (one round trip each).",
        "",
        "Keyword search: the question's words are searched rarest first while the rows they "
        "match fit a budget of 1,000 (the rarest word always), estimated from the planner's "
        "lexeme statistics (`pg_stats`); at most 300 of those rows are ranked (`ts_rank`, "
        "every word as a plain and a French-stemmed prefix). Before, every word was searched "
        "in both forms and 2,000 rows ranked: 40.2 / 90.0 ms at 100k chunks and 16.2 / 25.2 "
        "ms at 10k (this script at commit 5a3acc8, same machine, load average 1.0), when the "
        "store default (both walks one after the other, the vector bound as text) took "
        "8.4 / 9.1 ms at 100k (recall@20 0.984).",
        "",
        "Tried and not kept (2026-11-25, 100k chunks): one HNSW index per expert holding her "
        "chunks and the shared ones (a single walk): recall@20 0.80 at ef_search 100 and 0.90 "
        "at 200, against 0.96 and 0.99 for the two walks; m=32 (0.960 at ef_search 100 for "
        "3.8 ms on the audrey index, where m=16 reaches 0.956 at 160 for 2.8 ms) and m=12 "
        "(0.958 at 200 for 2.9 ms): no more recall per millisecond than m=16; inner product "
        "instead of cosine: pgvector's HNSW cosine class already walks the graph with the "
        "negative inner product of normalised vectors, so only the exact scan would gain.",
    ]
    if turns is not None:
        chunks, results = turns
        lines += [
            "",
            f"Turn overhead on Postgres ({chunks:,} chunks: the sample knowledge ingested, grown "
            "as above), measured as in `bench/turn.py`: the turn's total minus the time spent "
            "waiting on the chat models (a local OpenAI-compatible server answering at once); "
            "history, both writes and the search go to Postgres; the model server runs in a "
            "child process, as in `bench/turn.py`. Target: p95 <= 30 ms. A turn makes about 9 "
            "round trips to Postgres (conversation, history, the visitor's message, the "
            "keyword search and the two vector walks at once, passages, the answer, the "
            "expert), each one statement or one pipeline. Before the keyword search's row "
            "budget it set the retrieval step's time (it runs beside the embedding and the "
            "vector search): overhead p50 / p95 28.8 / 44.3 ms (local router) and 25.3 / 41.6 "
            "ms (LLM orchestrator) at commit 5a3acc8 on the same machine (load average 1.0; "
            "39.4 / 65.4 and 32.1 / 70.5 ms in the run before, at 3.7).",
            "",
            "| path | turns | overhead p50 / p95 ms | total p50 / p95 ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, r in results.items():
            lines.append(
                f"| {name} | {len(r['overhead'])} | {ms(r['overhead'])} | {ms(r['total'])} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=120)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    parser.add_argument("--m", type=int, default=defaults.pg_hnsw_m)
    parser.add_argument("--ef-construction", type=int, default=defaults.pg_hnsw_ef_construction)
    parser.add_argument(
        "--turn-chunks", type=int, default=10_000, help="0: skip the turn overhead measure"
    )
    parser.add_argument("--quick", action="store_true", help="fewer turns")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if not args.no_write:
        update_section("postgres", report)


if __name__ == "__main__":
    main()
