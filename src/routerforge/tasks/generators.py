"""Task generators: each makes one question with an exact answer at a given difficulty (1 = easiest).

A generator is a function ``(rng, difficulty) -> Task``. Every fact used here is written in this file,
so the suite needs no data from outside and is the same on every machine for the same seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

AnswerType = Literal["number", "text", "text-cs", "option"]


@dataclass(frozen=True, slots=True)
class Task:
    """One generated question. ``answer_type`` picks the judge: ``number`` (numeric), ``text``
    (case-insensitive word match), ``text-cs`` (case-sensitive word match) or ``option`` (exactly one of
    ``options`` named, and it is ``answer``)."""

    kind: str
    difficulty: int
    question: str
    answer: str
    answer_type: AnswerType
    options: tuple[str, ...] = ()


Generator = Callable[[random.Random, int], Task]

NUMBER_ONLY = "Answer with the number only."
WORD_ONLY = "Answer with the word only."

WORDS: tuple[tuple[str, ...], ...] = (
    ("cat", "dog", "sun", "map", "cup", "pen", "hat", "box", "egg", "bus"),
    ("tree", "bird", "fish", "book", "lamp", "door", "milk", "rain", "star", "ship"),
    ("apple", "house", "table", "river", "chair", "plant", "bread", "cloud", "train", "stone"),
    ("garden", "pencil", "window", "rabbit", "orange", "silver", "bottle", "candle", "forest", "ticket"),
    (
        "kitchen",
        "blanket",
        "library",
        "monster",
        "picture",
        "teacher",
        "weather",
        "balloon",
        "dolphin",
        "harvest",
    ),
    (
        "elephant",
        "mountain",
        "sandwich",
        "umbrella",
        "calendar",
        "dinosaur",
        "tomorrow",
        "painting",
        "airplane",
    ),
)

CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Germany", "Berlin"),
    ("Japan", "Tokyo"),
    ("Russia", "Moscow"),
    ("England", "London"),
    ("Egypt", "Cairo"),
    ("Greece", "Athens"),
    ("China", "Beijing"),
    ("Portugal", "Lisbon"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Poland", "Warsaw"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Thailand", "Bangkok"),
    ("Finland", "Helsinki"),
    ("Hungary", "Budapest"),
    ("Denmark", "Copenhagen"),
)

OPPOSITES: tuple[tuple[str, str], ...] = (
    ("hot", "cold"),
    ("big", "small"),
    ("up", "down"),
    ("day", "night"),
    ("fast", "slow"),
    ("open", "closed"),
    ("wet", "dry"),
    ("happy", "sad"),
    ("light", "dark"),
    ("old", "young"),
    ("full", "empty"),
    ("early", "late"),
)

# (from unit, to unit, factor) — the answer is value * factor, always an integer here.
CONVERSIONS: tuple[tuple[str, str, int], ...] = (
    ("meters", "centimeters", 100),
    ("kilometers", "meters", 1000),
    ("kilograms", "grams", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("liters", "milliliters", 1000),
    ("dollars", "cents", 100),
    ("feet", "inches", 12),
)


CATEGORIES: dict[str, tuple[str, ...]] = {
    "an animal": ("dog", "horse", "tiger", "rabbit", "sheep", "mouse", "lion", "goat"),
    "a fruit": ("apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum"),
    "a color": ("red", "blue", "green", "yellow", "purple", "brown", "pink", "black"),
    "a vehicle": ("car", "bus", "train", "bicycle", "truck", "boat", "plane", "tractor"),
    "a piece of furniture": ("chair", "table", "sofa", "bed", "desk", "shelf", "stool", "cupboard"),
}


def _digits(rng: random.Random, n: int) -> int:
    return rng.randint(10 ** (n - 1) if n > 1 else 1, 10**n - 1)


def addition(rng: random.Random, difficulty: int) -> Task:
    a, b = _digits(rng, difficulty), _digits(rng, difficulty)
    return Task("addition", difficulty, f"What is {a} + {b}? {NUMBER_ONLY}", str(a + b), "number")


def subtraction(rng: random.Random, difficulty: int) -> Task:
    a, b = _digits(rng, difficulty), _digits(rng, difficulty)
    a, b = max(a, b), min(a, b)
    return Task("subtraction", difficulty, f"What is {a} - {b}? {NUMBER_ONLY}", str(a - b), "number")


def multiplication(rng: random.Random, difficulty: int) -> Task:
    a = _digits(rng, difficulty)
    b = rng.randint(2, 9)
    return Task("multiplication", difficulty, f"What is {a} times {b}? {NUMBER_ONLY}", str(a * b), "number")


def next_number(rng: random.Random, difficulty: int) -> Task:
    n = _digits(rng, difficulty + 1)
    return Task(
        "next_number", difficulty, f"What number comes after {n}? {NUMBER_ONLY}", str(n + 1), "number"
    )


def compare(rng: random.Random, difficulty: int) -> Task:
    a = _digits(rng, difficulty + 1)
    b = _digits(rng, difficulty + 1)
    while b == a:
        b = _digits(rng, difficulty + 1)
    return Task(
        "compare",
        difficulty,
        f"Which number is larger, {a} or {b}? {NUMBER_ONLY}",
        str(max(a, b)),
        "option",
        (str(a), str(b)),
    )


def _word(rng: random.Random, difficulty: int) -> str:
    return rng.choice(WORDS[min(difficulty, len(WORDS)) - 1])


def count_letters(rng: random.Random, difficulty: int) -> Task:
    word = _word(rng, difficulty + 1)
    return Task(
        "count_letters",
        difficulty,
        f"How many letters are in the word '{word}'? {NUMBER_ONLY}",
        str(len(word)),
        "number",
    )


def count_words(rng: random.Random, difficulty: int) -> Task:
    n = difficulty + 2 + rng.randint(0, 1)
    words = [rng.choice(rng.choice(WORDS)) for _ in range(n)]
    sentence = " ".join(words)
    return Task(
        "count_words",
        difficulty,
        f"How many words are in '{sentence}'? {NUMBER_ONLY}",
        str(len(words)),
        "number",
    )


def reverse_word(rng: random.Random, difficulty: int) -> Task:
    word = _word(rng, difficulty)
    return Task("reverse", difficulty, f"Write the word '{word}' backwards. {WORD_ONLY}", word[::-1], "text")


def uppercase(rng: random.Random, difficulty: int) -> Task:
    word = _word(rng, difficulty + 1)
    return Task(
        "uppercase", difficulty, f"Write the word '{word}' in uppercase. {WORD_ONLY}", word.upper(), "text-cs"
    )


def first_letter(rng: random.Random, difficulty: int) -> Task:
    word = _word(rng, difficulty + 1)
    return Task(
        "first_letter",
        difficulty,
        f"What is the first letter of the word '{word}'? Answer with the letter only.",
        word[0],
        "text",
    )


def unit_conversion(rng: random.Random, difficulty: int) -> Task:
    src, dst, factor = rng.choice(CONVERSIONS)
    value = rng.randint(2, 9) if difficulty == 1 else _digits(rng, difficulty)
    return Task(
        "unit_conversion",
        difficulty,
        f"How many {dst} are in {value} {src}? {NUMBER_ONLY}",
        str(value * factor),
        "number",
    )


def capital(rng: random.Random, difficulty: int) -> Task:
    country, city = rng.choice(CAPITALS)
    return Task(
        "capital", difficulty, f"What is the capital of {country}? Answer with the city only.", city, "text"
    )


def opposite(rng: random.Random, difficulty: int) -> Task:
    word, other = rng.choice(OPPOSITES)
    if rng.random() < 0.5:
        word, other = other, word
    return Task("opposite", difficulty, f"What is the opposite of '{word}'? {WORD_ONLY}", other, "text")


def longer_word(rng: random.Random, difficulty: int) -> Task:
    gap = max(1, 4 - difficulty)
    short_len = rng.randint(0, len(WORDS) - 1 - gap)
    short, long_ = rng.choice(WORDS[short_len]), rng.choice(WORDS[short_len + gap])
    first, second = (short, long_) if rng.random() < 0.5 else (long_, short)
    return Task(
        "longer_word",
        difficulty,
        f"Which word is longer, '{first}' or '{second}'? {WORD_ONLY}",
        long_,
        "option",
        (first, second),
    )


def category_choice(rng: random.Random, difficulty: int) -> Task:
    names = sorted(CATEGORIES)
    target = rng.choice(names)
    answer = rng.choice(CATEGORIES[target])
    others = [
        rng.choice(CATEGORIES[n]) for n in rng.sample([n for n in names if n != target], difficulty + 1)
    ]
    options = [answer, *others]
    rng.shuffle(options)
    listed = ", ".join(options[:-1]) + f" or {options[-1]}"
    return Task(
        "category_choice",
        difficulty,
        f"Which of these is {target}: {listed}? {WORD_ONLY}",
        answer,
        "option",
        tuple(options),
    )


GENERATORS: dict[str, Generator] = {
    "addition": addition,
    "subtraction": subtraction,
    "multiplication": multiplication,
    "next_number": next_number,
    "compare": compare,
    "count_letters": count_letters,
    "count_words": count_words,
    "reverse": reverse_word,
    "uppercase": uppercase,
    "first_letter": first_letter,
    "unit_conversion": unit_conversion,
    "capital": capital,
    "opposite": opposite,
    "longer_word": longer_word,
    "category_choice": category_choice,
}
