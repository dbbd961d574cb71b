"""An inverted index over whitespace tokens that answers ``Catalog.search`` without reading every product.

Same results as the plain scan (every query word a substring of the product's search text; name
hits first; ties in catalog order), because a query word holds no whitespace: it is a substring of
a text exactly when it is a substring of one of the text's whitespace-separated tokens. So a word
is looked up by scanning the catalog's *vocabulary* (thousands of distinct tokens) instead of its
products (up to hundreds of thousands), and the products come from the matching tokens' postings.

What a search may cost is bounded whatever its words: repeated words count once, at most
``MAX_SEARCH_WORDS`` different words are accepted, only the first ``MAX_SEARCH_DEPTH`` matches
can be paged through (ranking keeps only the best ``first + count``), and the memory of looked-up
words is capped by the number of positions it holds (broad words match most of the catalog).

Searches run in a worker thread, but a thread holding the GIL in one long C call (a set operation
on 100k positions) makes the event loop wait. So the work is done in slices of ``SLICE`` positions
with ``time.sleep(0)`` between them, which hands the GIL to the loop whenever it is waiting.
"""

from __future__ import annotations

import heapq
import time
from array import array
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Sequence, Set
from itertools import islice
from threading import Lock
from typing import Protocol

from service.search_form import category_key

MAX_SEARCH_WORDS = 10  # different words in one query; more are refused (each word costs a pass over the matches)
WORD_CACHE_POSITIONS = 2_000_000  # positions kept for looked-up words (~70 bytes each): about 140 MB at most
MAX_SEARCH_DEPTH = 1_000  # a page must start within this many best matches: deeper, narrow the search
SLICE = 2_048  # positions ranked between two GIL hand-offs (each slice costs well under 1 ms)
UNION_SLICE = 16_384  # positions added to a set between two GIL hand-offs (about 0.3 ms)

Positions = array  # of 'i': product positions in catalog order, ascending (4 bytes each)
WordSets = tuple[Set[int], Set[int], Set[int], Set[int]]  # never changed once built


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
        self._category_sets: dict[str, Set[int]] = {}
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

    def in_category(self, wanted: str) -> Set[int]:
        found = self._category_sets.get(wanted)
        if found is None:
            found = _union([self._category.get(wanted, _positions())])
            if wanted in self._category:  # only real categories are kept (queries may name any)
                self._category_sets[wanted] = found
        return found

    def search(
        self, words: list[str], wanted_category: str | None, span: range, first: int, count: int
    ) -> tuple[list[int], int]:
        """Positions ``first .. first+count`` of the ranked matches within ``span``, and how many match.

        ``words`` must be distinct and at most ``MAX_SEARCH_WORDS`` (``Catalog.search`` sees to it).
        """
        filters: list[Set[int]] = [] if wanted_category is None else [self.in_category(wanted_category)]
        looked_up = [self.word(word) for word in words]
        filters += [anywhere for anywhere, *_ in looked_up]
        if not filters:  # no words, no category: everything in the span, in catalog order
            return list(span[first : first + count]), len(span)
        filters.sort(key=len)
        smallest, others = filters[0], filters[1:]
        bonus = looked_up[0][3] if looked_up else frozenset()

        def rank(position: int) -> tuple[int, int]:
            score = 1 if position in bonus else 0
            for _, in_name, word_start, _ in looked_up:
                score += 3 if position in word_start else 2 if position in in_name else 1
            return -score, position

        whole_span = len(span) == len(self.products)
        keep = first + count
        best: list[tuple[int, int]] = []
        total = 0
        for chunk in _slices(smallest):
            matching = set(chunk)
            for other in others:
                matching &= other  # iterates the (small) chunk, not the other set
                if not matching:
                    break
            if not whole_span:
                matching = {p for p in matching if span.start <= p < span.stop}
            total += len(matching)
            if keep:
                best = heapq.nsmallest(keep, [*best, *map(rank, matching)])
            time.sleep(0)  # let the event loop take the GIL if it is waiting
        return [p for _, p in best][first:], total


def _slices(positions: Set[int]) -> Iterator[list[int]]:
    """``positions`` in slices of ``SLICE``, so no single step holds the GIL for long."""
    items = iter(positions)
    while chunk := list(islice(items, SLICE)):
        yield chunk


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


def _union(groups: Iterable[Positions]) -> Set[int]:
    """One set of all ``groups``' positions, built a slice at a time (a broad word's postings run into millions)."""
    found: set[int] = set()
    pending = 0
    for group in groups:
        for start in range(0, len(group), UNION_SLICE):
            found.update(group[start : start + UNION_SLICE])
            pending += min(UNION_SLICE, len(group) - start)
            if pending >= UNION_SLICE:
                time.sleep(0)
                pending = 0
    return found
