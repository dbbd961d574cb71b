"""An inverted index over whitespace tokens that answers ``Catalog.search`` without reading every product.

Same results as the plain scan (every query word a substring of the product's search text; name
hits first; ties in catalog order), because a query word holds no whitespace: it is a substring of
a text exactly when it is a substring of one of the text's whitespace-separated tokens. So a word
is looked up by scanning the catalog's *vocabulary* (thousands of distinct tokens) instead of its
products (up to hundreds of thousands), and the products come from the matching tokens' postings.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.catalog import Product

WORD_CACHE = 4096  # query words remembered, each with its sets of product positions


class SearchIndex:
    """Positions (index in catalog order) by token, for the match test and each scoring rule."""

    def __init__(self, products: Sequence[Product]) -> None:
        self.products = products
        text: dict[str, list[int]] = defaultdict(list)
        name: dict[str, list[int]] = defaultdict(list)  # tokens of the name split on " " (word starts)
        first: dict[str, list[int]] = defaultdict(list)  # the name's first " "-token (name.startswith)
        category: dict[str, set[int]] = defaultdict(set)
        for position, product in enumerate(products):
            for token in set(product.search_text.split()):
                text[token].append(position)
            for token in set(product.search_name.split(" ")):
                if token:
                    name[token].append(position)
            first[product.search_name.split(" ", 1)[0]].append(position)
            for label in product.categories:
                category[_category_key(label)].add(position)
        self._text, self._name, self._first = dict(text), dict(name), dict(first)
        self._category = dict(category)
        self.word = lru_cache(maxsize=WORD_CACHE)(self._word)

    def _word(self, word: str) -> tuple[frozenset[int], frozenset[int], frozenset[int], frozenset[int]]:
        """(matches anywhere, in the name, at a name word's start, at the name's start) for one query word."""
        anywhere = _union(ids for token, ids in self._text.items() if word in token)
        in_name = _union(ids for token, ids in self._name.items() if word in token)
        name_word_start = _union(ids for token, ids in self._name.items() if token.startswith(word))
        name_start = _union(ids for token, ids in self._first.items() if token.startswith(word))
        return anywhere, in_name, name_word_start, name_start

    def in_category(self, wanted: str) -> frozenset[int]:
        return frozenset(self._category.get(wanted, ()))

    def search(
        self, words: list[str], wanted_category: str | None, span: range, first: int, count: int
    ) -> tuple[list[int], int]:
        """Positions ``first .. first+count`` of the ranked matches within ``span``, and how many match."""
        candidates: set[int] | None = None
        if wanted_category is not None:
            candidates = set(self.in_category(wanted_category))
        looked_up = [self.word(word) for word in words]
        for anywhere, *_ in sorted(looked_up, key=lambda sets: len(sets[0])):
            candidates = set(anywhere) if candidates is None else candidates & anywhere
            if not candidates:
                return [], 0
        if candidates is None:  # no words, no category: everything in the span, in catalog order
            return list(span[first : first + count]), len(span)
        if len(span) != len(self.products):
            candidates = {p for p in candidates if span.start <= p < span.stop}
        if not words:
            ordered = sorted(candidates)
            return ordered[first : first + count], len(ordered)
        bonus = looked_up[0][3]

        def rank(position: int) -> tuple[int, int]:
            score = 1 if position in bonus else 0
            for _, in_name, word_start, _ in looked_up:
                score += 3 if position in word_start else 2 if position in in_name else 1
            return -score, position

        return [p for _, p in heapq.nsmallest(first + count, map(rank, candidates))][first:], len(candidates)


def _union(groups: object) -> frozenset[int]:
    found: set[int] = set()
    for ids in groups:  # type: ignore[attr-defined]
        found.update(ids)
    return frozenset(found)


def _category_key(label: str) -> str:
    from service.catalog import normalize

    return normalize(label).strip()
