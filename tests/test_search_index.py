"""The search index answers exactly what scanning every product answers (the pre-index algorithm, kept here)."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

from service import search_index
from service.catalog import Catalog, Product, SearchRefused, load_catalog, load_products_file, normalize
from service.search_index import MAX_SEARCH_WORDS, SearchIndex, WordCache


def _score(product: Product, words: list[str]) -> float:
    """Name hits outrank category and description hits; a word that starts a name word counts most."""
    score = 0.0
    for word in words:
        if (" " + product.search_name).find(" " + word) >= 0:
            score += 3
        elif word in product.search_name:
            score += 2
        else:
            score += 1
    if product.search_name.startswith(words[0]):
        score += 1
    return score


def scan_search(catalog: Catalog, query: str, category: str | None, store_id: str | None, page: int, size: int):
    """A plain scan of every product (what the index replaced): the reference it must match; words count once."""
    words = list(dict.fromkeys(normalize(query).split()))
    wanted = normalize(category).strip() if category else None
    stores = [catalog.stores[store_id]] if store_id else list(catalog.stores.values())
    scored: list[tuple[float, int, Product]] = []
    position = 0
    for store in stores:
        for product in store.products:
            position += 1
            if wanted and not any(normalize(c).strip() == wanted for c in product.categories):
                continue
            if words and not all(word in product.search_text for word in words):
                continue
            scored.append((-_score(product, words) if words else 0.0, position, product))
    if words:
        scored.sort(key=lambda item: (item[0], item[1]))
    start = (page - 1) * size
    return [item[2].id for item in scored[start : start + size]], len(scored)


def queries(catalog: Catalog, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = [p.search_text for s in catalog.stores.values() for p in s.products]
    found = ["", "zzzz", "a", "  ", "OATS", "חַלָּה"]
    for _ in range(count):
        words = rng.choice(texts).split()
        picked = rng.sample(words, min(len(words), rng.randint(1, 3)))
        picked += rng.sample(picked, rng.randint(0, len(picked)))  # some words given twice
        # whole words, and pieces of words (substring matches inside a token)
        found.append(" ".join(w if rng.random() < 0.5 else w[rng.randint(0, max(0, len(w) - 2)) :] for w in picked))
    return found


def assert_same(catalog: Catalog, seed: int) -> None:
    rng = random.Random(seed)
    categories = [None, *catalog.categories()[:5]]
    for query in queries(catalog, 150, seed):
        category = rng.choice(categories)
        store_id = rng.choice([None, *catalog.stores])
        page, size = rng.choice([(1, 12), (2, 5), (1, 50), (3, 7)])
        found = catalog.search(query, category=category, store_id=store_id, page=page, page_size=size)
        expected = scan_search(catalog, query, category, store_id, page, size)
        assert ([p.id for p in found.products], found.total) == expected, (query, category, store_id, page)


def test_index_matches_scan_on_demo_store() -> None:
    assert_same(load_catalog(None), seed=1)


def test_index_matches_scan_on_real_catalog(shared_catalog_file: Path) -> None:
    real = load_products_file(shared_catalog_file, store_id="nitzat")
    assert_same(Catalog([real, *load_catalog(None).stores.values()]), seed=2)


@pytest.mark.parametrize("query", ["", "zzzz"])
def test_edge_queries(query: str) -> None:
    demo = load_catalog(None)
    assert demo.search(query, category="  ").total == scan_search(demo, query, "  ", None, 1, 12)[1]


@pytest.mark.parametrize("query", ["oats " * 40, "o " * 99, "a b a b a b", "OATS oats Oats"])
def test_a_repeated_word_counts_once(query: str) -> None:
    demo = load_catalog(None)
    once = " ".join(dict.fromkeys(normalize(query).split()))
    found, single = demo.search(query, page_size=50), demo.search(once, page_size=50)
    assert ([p.id for p in found.products], found.total) == ([p.id for p in single.products], single.total)
    assert ([p.id for p in found.products], found.total) == scan_search(demo, query, None, None, 1, 50)


def test_more_different_words_than_the_limit_are_refused() -> None:
    demo = load_catalog(None)
    allowed = " ".join(f"w{i}" for i in range(MAX_SEARCH_WORDS))
    assert demo.search(allowed).total == 0
    with pytest.raises(SearchRefused, match=f"use at most {MAX_SEARCH_WORDS}"):
        demo.search(allowed + " one-more")
    assert demo.search(allowed + " " + allowed).total == 0  # repeats do not count toward the limit


def test_word_cache_holds_at_most_its_budget_of_positions() -> None:
    """Broad words hold most of the catalog each; the cache stays within its positions budget, newest kept."""
    demo = load_catalog(None)
    index = SearchIndex(demo._in_order)
    budget = 3 * len(demo._in_order)
    index._cache = WordCache(budget)
    letters = sorted({ch for p in demo._in_order for ch in p.search_name if ch.isalnum()})
    for word in letters + [a + b for a in letters[:10] for b in letters[:10]]:
        index.word(word)
        assert 0 < index._cache.held <= budget
        assert index._cache.get(word) is not None or sum(map(len, index._word(word))) > budget


def test_the_index_never_imports_the_catalog() -> None:
    """No import circle: the catalog builds the index, so the index (even lazily, or for type checking) must not
    import the catalog back; both take the search form of text from ``service.search_form``."""
    tree = ast.parse(Path(search_index.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "service.search_form" in imported
    assert "service.catalog" not in imported, imported
