"""(e) search_products latency: the real catalog, and a synthetic catalog of many products built from its words."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass

from bench.load import median, percentile
from bench.redis_cost import SHARED_CATALOG
from service.catalog import Catalog, build_store, load_catalog, load_products_file


@dataclass(frozen=True, slots=True)
class SearchResult:
    catalog: str
    products: int
    queries: int
    median_ms: float
    p99_ms: float
    worst_query: str
    worst_ms: float
    cold_median_ms: float
    cold_worst_ms: float


def real_catalog() -> Catalog | None:
    if not SHARED_CATALOG.is_file():
        return None
    return Catalog([load_products_file(SHARED_CATALOG, store_id="nitzat-haduvdevan")])


def synthetic_catalog(size: int, source: Catalog) -> Catalog:
    """``size`` products whose names, categories and descriptions are drawn from ``source``'s words."""
    return Catalog([build_store(synthetic_records(size, source), store_id="synthetic", name="synthetic")])


def synthetic_records(size: int, source: Catalog) -> list[dict[str, str]]:
    """The scraped records of :func:`synthetic_catalog` (also written to a products.json by bench.serving)."""
    rng = random.Random(11)
    products = [p for s in source.stores.values() for p in s.products]
    words = sorted({w for p in products for w in (p.name + " " + p.description).split() if len(w) > 1})
    categories = sorted({c for p in products for c in p.categories}) or ["general"]
    records = [
        {
            "name": " ".join(rng.choices(words, k=rng.randint(2, 6)))
            + "\n"
            + " ".join(rng.choices(words, k=rng.randint(0, 25))),
            "price": f"{rng.randint(100, 99999) / 100:.2f}",
            "category": rng.choice(categories),
            "url": f"/p/item-i{index}",
        }
        for index in range(size)
    ]
    return records


def queries_for(catalog: Catalog) -> list[str]:
    """Common and rare single words, two-word queries, a prefix, a miss, and the empty query (list all)."""
    rng = random.Random(5)
    names = [p.name for s in catalog.stores.values() for p in s.products]
    words = [w for name in names for w in name.split() if len(w) > 2]
    picked = rng.sample(words, min(12, len(words)))
    pairs = [f"{a} {b}" for a, b in zip(picked[::2], picked[1::2], strict=False)]
    return ["", *picked, *pairs, picked[0][:2], "zzzqqq"]


def hostile_queries(catalog: Catalog) -> list[str]:
    """Queries within the 200-character limit that cost the most: many words, each matching nearly everything."""
    letters = Counter(ch for s in catalog.stores.values() for p in s.products[:2000] for ch in p.name.casefold())
    common = [ch for ch, _ in letters.most_common() if ch.isalnum()]
    from service.search_index import MAX_SEARCH_WORDS

    return [
        "o " * 99,  # the example: one broad word, repeated
        (common[0] + " ") * 99,  # the catalog's most common letter, repeated
        " ".join(common[:MAX_SEARCH_WORDS]),  # as many different broad words as a query may have
        " ".join(common[:100]),  # up to 100 different broad one-letter words
        " ".join(a + b for a in common[:8] for b in common[:8])[:200],  # different broad two-letter words
        common[0] * 200,  # one long word
    ]


@dataclass(frozen=True, slots=True)
class HostileResult:
    products: int
    worst_query: str
    worst_ms: float
    cold_worst_ms: float


def measure_hostile(catalog: Catalog, repeats: int) -> HostileResult:
    """The slowest hostile query (median of ``repeats`` runs) and the slowest first run with the word cache empty."""
    per_query: dict[str, float] = {}
    cold: list[float] = []
    for query in hostile_queries(catalog):
        _clear_word_cache(catalog)
        times = []
        for _ in range(1 + repeats):
            t0 = time.perf_counter()
            try:
                catalog.search(query, page=1, page_size=12)
            except ValueError:  # refused (too many words): refusing is what it costs
                pass
            times.append(time.perf_counter() - t0)
        cold.append(times[0])
        per_query[query] = median(times[1:])
    worst = max(per_query, key=per_query.__getitem__)
    products = sum(len(s.products) for s in catalog.stores.values())
    return HostileResult(products, worst, per_query[worst] * 1000, max(cold) * 1000)


def _clear_word_cache(catalog: Catalog) -> None:
    index = getattr(catalog, "_index", None)
    if hasattr(index, "clear_cache"):
        index.clear_cache()
    elif hasattr(getattr(index, "word", None), "cache_clear"):  # the index before its cache had a size budget
        index.word.cache_clear()


def measure(catalog: Catalog, label: str, repeats: int) -> SearchResult:
    queries = queries_for(catalog)
    per_query: dict[str, float] = {}
    cold: list[float] = []
    all_times: list[float] = []
    for query in queries:
        _clear_word_cache(catalog)  # first run of each query with the index's word cache empty
        t0 = time.perf_counter()
        catalog.search(query, page=1, page_size=12)
        cold.append(time.perf_counter() - t0)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            catalog.search(query, page=1, page_size=12)
            times.append(time.perf_counter() - t0)
        per_query[query] = median(times)
        all_times += times
    worst = max(per_query, key=per_query.__getitem__)
    products = sum(len(s.products) for s in catalog.stores.values())
    return SearchResult(
        label,
        products,
        len(queries),
        median(per_query.values()) * 1000,
        percentile(all_times, 0.99) * 1000,
        worst,
        per_query[worst] * 1000,
        median(cold) * 1000,
        max(cold) * 1000,
    )


def run(synthetic_size: int, repeats: int) -> tuple[list[SearchResult], HostileResult]:
    real = real_catalog()
    results = []
    if real is not None:
        results.append(measure(real, "real (nitzat-haduvdevan)", repeats))
    source = real or load_catalog(None)
    synthetic = synthetic_catalog(synthetic_size, source)
    results.append(measure(synthetic, f"synthetic {synthetic_size}", repeats))
    return results, measure_hostile(synthetic, max(1, repeats // 4))
