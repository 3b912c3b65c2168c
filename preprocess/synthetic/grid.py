"""A GRID-like closed-vocabulary sentence grammar for lip-reading experiments.

Every sentence has six words, one from each slot, always in this order (as the GRID corpus,
Cooke et al. 2006)::

    command     bin lay place set
    colour      blue green red white
    preposition at by in with
    letter      a-z except w
    digit       zero one ... nine
    adverb      again now please soon

for example ``set blue by f two now``. With 51 words in fixed positions a small model can learn
to read them from a few hundred clips. Letters are written as the letter (the transcript) but
spoken by their name (espeak-ng would read ``a`` as the article).
"""

from __future__ import annotations

import numpy as np

COMMANDS = ("bin", "lay", "place", "set")
COLOURS = ("blue", "green", "red", "white")
PREPOSITIONS = ("at", "by", "in", "with")
LETTERS = tuple(chr(c) for c in range(ord("a"), ord("z") + 1) if chr(c) != "w")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ADVERBS = ("again", "now", "please", "soon")
SLOTS = (COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)
VOCABULARY = frozenset(word for slot in SLOTS for word in slot)

# What espeak-ng is given for a written letter where the letter alone would not be read as its name.
_SPOKEN_LETTERS = {"a": "ay"}


def make_sentence(rng: np.random.Generator) -> str:
    """A random GRID sentence (lowercase, six words, no punctuation), one draw per slot."""
    return " ".join(str(slot[int(rng.integers(len(slot)))]) for slot in SLOTS)


def spoken_form(sentence: str) -> str:
    """The text espeak-ng says for ``sentence``: letters become their names."""
    return " ".join(_SPOKEN_LETTERS.get(word, word) for word in sentence.split())


def is_grid_sentence(sentence: str) -> bool:
    """True when ``sentence`` has one word of each slot, in slot order."""
    words = sentence.split()
    return len(words) == len(SLOTS) and all(word in slot for word, slot in zip(words, SLOTS))
