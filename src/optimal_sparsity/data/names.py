"""Deterministic pools of made-up words (names, places, things) from syllables."""

from __future__ import annotations

import random

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "gr", "kl", "st", "tr", "sh", "ch"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m"]


def word_pool(n: int, seed: int, syllables: tuple[int, int] = (2, 3),
              capitalize: bool = True, exclude: frozenset[str] = frozenset()) -> list[str]:
    """``n`` distinct pronounceable words, the same for the same arguments."""
    rng = random.Random(seed)
    seen: set[str] = set(exclude)
    out: list[str] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(f"cannot make {n} distinct words with syllables={syllables}")
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                    for _ in range(rng.randint(*syllables)))
        if capitalize:
            w = w.capitalize()
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out
