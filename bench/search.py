"""(e) search_products latency: the real catalog, and a synthetic catalog of many products built from its words."""

from __future__ import annotations

import random
import time
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
    rng = random.Random(11)
    products = [p for s in source.stores.values() for p in s.products]
    words = sorted({w for p in products for w in (p.name + " " + p.description).split() if len(w) > 1})
    categories = sorted({c for p in products for c in p.categories}) or ["general"]
    records = [
        {
            "name": " ".join(rng.choices(words, k=rng.randint(2, 6)))
            + "\n" + " ".join(rng.choices(words, k=rng.randint(0, 25))),
            "price": f"{rng.randint(100, 99999) / 100:.2f}",
            "category": rng.choice(categories),
            "url": f"/p/item-i{index}",
        }
        for index in range(size)
    ]  # fmt: skip
    return Catalog([build_store(records, store_id="synthetic", name="synthetic")])


def queries_for(catalog: Catalog) -> list[str]:
    """Common and rare single words, two-word queries, a prefix, a miss, and the empty query (list all)."""
    rng = random.Random(5)
    names = [p.name for s in catalog.stores.values() for p in s.products]
    words = [w for name in names for w in name.split() if len(w) > 2]
    picked = rng.sample(words, min(12, len(words)))
    pairs = [f"{a} {b}" for a, b in zip(picked[::2], picked[1::2], strict=False)]
    return ["", *picked, *pairs, picked[0][:2], "zzzqqq"]


def measure(catalog: Catalog, label: str, repeats: int) -> SearchResult:
    queries = queries_for(catalog)
    per_query: dict[str, float] = {}
    cold: list[float] = []
    all_times: list[float] = []
    index = getattr(catalog, "_index", None)
    for query in queries:
        if index is not None:  # first run of each query with the index's word cache empty
            index.word.cache_clear()
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
    return SearchResult(label, products, len(queries), median(per_query.values()) * 1000,
                        percentile(all_times, 0.99) * 1000, worst, per_query[worst] * 1000,
                        median(cold) * 1000, max(cold) * 1000)  # fmt: skip


def run(synthetic_size: int, repeats: int) -> list[SearchResult]:
    real = real_catalog()
    results = []
    if real is not None:
        results.append(measure(real, "real (nitzat-haduvdevan)", repeats))
    source = real or load_catalog(None)
    results.append(measure(synthetic_catalog(synthetic_size, source), f"synthetic {synthetic_size}", repeats))
    return results
