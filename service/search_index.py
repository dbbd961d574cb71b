"""An inverted index over whitespace tokens that answers ``Catalog.search`` without reading every product.

Same results as the plain scan (every query word a substring of the product's search text; name
hits first; ties in catalog order), because a query word holds no whitespace: it is a substring of
a text exactly when it is a substring of one of the text's whitespace-separated tokens. So a word
is looked up by scanning the catalog's *vocabulary* (thousands of distinct tokens) instead of its
products (up to hundreds of thousands), and the products come from the matching tokens' postings.

What a search may cost is bounded whatever its words: repeated words count once, at most
``MAX_SEARCH_WORDS`` different words are accepted, and the memory of looked-up words is capped by
the number of positions it holds (broad words match most of the catalog), not by a count of words.
"""

from __future__ import annotations

import heapq
from array import array
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from threading import Lock
from typing import Protocol

from service.search_form import category_key

MAX_SEARCH_WORDS = 10  # different words in one query; more are refused (each word costs a pass over the matches)
WORD_CACHE_POSITIONS = 2_000_000  # positions kept for looked-up words (~70 bytes each): about 140 MB at most

Positions = array  # of 'i': product positions in catalog order, ascending (4 bytes each)
WordSets = tuple[frozenset[int], frozenset[int], frozenset[int], frozenset[int]]


class Indexed(Protocol):
    """What the index reads of a product (``service.catalog.Product``), all in search form."""

    @property
    def search_name(self) -> str: ...

    @property
    def search_text(self) -> str: ...

    @property
    def categories(self) -> tuple[str, ...]: ...


class SearchIndex:
    """Positions (index in catalog order) by token, for the match test and each scoring rule."""

    def __init__(self, products: Sequence[Indexed]) -> None:
        self.products = products
        text: dict[str, Positions] = defaultdict(_positions)
        name: dict[str, Positions] = defaultdict(_positions)  # tokens of the name split on " " (word starts)
        first: dict[str, Positions] = defaultdict(_positions)  # the name's first " "-token (name.startswith)
        category: dict[str, Positions] = defaultdict(_positions)
        for position, product in enumerate(products):
            search_name = product.search_name
            for token in set(product.search_text.split()):
                text[token].append(position)
            for token in set(search_name.split(" ")):
                if token:
                    name[token].append(position)
            first[search_name.split(" ", 1)[0]].append(position)
            for key in {category_key(label) for label in product.categories}:
                category[key].append(position)
        self._text, self._name, self._first = dict(text), dict(name), dict(first)
        self._category = dict(category)
        self._cache = WordCache(WORD_CACHE_POSITIONS)

    def word(self, word: str) -> WordSets:
        """(matches anywhere, in the name, at a name word's start, at the name's start) for one query word."""
        found = self._cache.get(word)
        if found is None:
            found = self._word(word)
            self._cache.put(word, found)
        return found

    def _word(self, word: str) -> WordSets:
        anywhere = _union(ids for token, ids in self._text.items() if word in token)
        in_name = _union(ids for token, ids in self._name.items() if word in token)
        name_word_start = _union(ids for token, ids in self._name.items() if token.startswith(word))
        name_start = _union(ids for token, ids in self._first.items() if token.startswith(word))
        return anywhere, in_name, name_word_start, name_start

    def clear_cache(self) -> None:
        self._cache.clear()

    def in_category(self, wanted: str) -> frozenset[int]:
        return frozenset(self._category.get(wanted, ()))

    def search(
        self, words: list[str], wanted_category: str | None, span: range, first: int, count: int
    ) -> tuple[list[int], int]:
        """Positions ``first .. first+count`` of the ranked matches within ``span``, and how many match.

        ``words`` must be distinct and at most ``MAX_SEARCH_WORDS`` (``Catalog.search`` sees to it).
        """
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


class WordCache:
    """Least recently used words, holding at most ``budget`` positions in all (a broad word holds many)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0
        self._entries: OrderedDict[str, WordSets] = OrderedDict()
        self._lock = Lock()  # searches run in worker threads

    def get(self, word: str) -> WordSets | None:
        with self._lock:
            found = self._entries.get(word)
            if found is not None:
                self._entries.move_to_end(word)
            return found

    def put(self, word: str, sets: WordSets) -> None:
        size = sum(len(s) for s in sets)
        if size > self.budget:
            return
        with self._lock:
            if word in self._entries:
                return
            self._entries[word] = sets
            self.held += size
            while self.held > self.budget:
                _, evicted = self._entries.popitem(last=False)
                self.held -= sum(len(s) for s in evicted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.held = 0


def _positions() -> Positions:
    return array("i")


def _union(groups: Iterable[Positions]) -> frozenset[int]:
    return frozenset().union(*groups)
