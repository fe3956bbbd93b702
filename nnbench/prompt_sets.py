"""Templated prompt sets, large enough to mean something: IOI pairs, factual recall, generation.

Each set is a seeded shuffle of every prompt its templates make, so a set of N prompts is the
first N of it (a 16-prompt set is inside the 64-prompt one) and the same N gives the same set on
every machine. Every name, place and thing is one token, with its leading space, in all four
families' tokenizers (GPT-2's BPE, SmolLM2's, Qwen2.5's and Gemma-3's; checked by
``tests/test_prompt_sets.py``), so each IOI pair's clean and corrupt prompts differ in exactly one
token, at the same position from the end, on every family.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from functools import cache
from pathlib import Path

from nnbench.prompts import FACTS, IOI_PAIRS, PAIRED, Prompt
from nnbench.validate import SpecError

SEED = 20261202
"""the shuffle's seed: fixed, so ``prompts = N`` names one set"""

NAMES = ("Mary", "John", "Paul", "Lisa", "Mark", "Kate", "Tom", "Anna", "James", "Sarah", "David", "Emma",
         "Michael", "Laura", "Peter", "Susan", "Chris", "Alice", "Bob", "Jack", "Tim", "Mike", "Dan", "Sam",
         "Ben", "Max", "Amy", "Jane", "Rose", "Ann", "Joe", "Bill", "Steve", "Kevin", "Brian", "Eric")
PLACES = ("store", "park", "office", "school", "garden", "beach", "station", "library", "kitchen", "market",
          "hospital", "restaurant", "church", "museum", "airport", "lake", "river", "forest", "hotel", "bank")
THINGS = ("drink", "ball", "letter", "book", "gift", "key", "ring", "bag", "pen", "cake", "flower", "card", "hat",
          "coin", "phone")

IOI_TEMPLATES = (
    "When {a} and {b} went to the {place}, {s} gave a {thing} to",
    "After {a} and {b} arrived at the {place}, {s} handed a {thing} to",
    "While {a} and {b} were at the {place}, {s} passed a {thing} to",
)
"""the repeated subject ``{s}`` sits five tokens from the end in each"""

COUNTRIES = ("France", "Japan", "Italy", "Germany", "Spain", "Egypt", "Canada", "Russia", "China", "India",
             "Brazil", "Mexico", "Greece", "Turkey", "Poland", "Sweden", "Norway", "Ireland", "Portugal",
             "Austria", "Kenya", "Peru", "Chile", "Cuba", "Argentina", "Australia", "Thailand", "Vietnam")
CITIES = ("Paris", "London", "Rome", "Berlin", "Madrid", "Tokyo", "Cairo", "Moscow", "Athens", "Vienna",
          "Dublin", "Lisbon", "Oslo", "Stockholm", "Warsaw", "Toronto", "Sydney", "Chicago", "Boston", "Mumbai")
FACT_TEMPLATES = (
    ("The capital of {x} is", COUNTRIES),
    ("The official language of {x} is", COUNTRIES),
    ("{x} is a city in the country of", CITIES),
    ("The most famous landmark in {x} is the", CITIES),
)
GENERATION_TEMPLATES = (
    "Once upon a time, {a} went to the {place} and",
    "Yesterday {a} found a {thing} at the {place}. Then",
)


def _ioi() -> list[Prompt]:
    prompts = []
    for template, (a, b), place, thing in itertools.product(IOI_TEMPLATES, itertools.permutations(NAMES[:12], 2),
                                                            PLACES[:6], THINGS[:4]):
        prompts.append(Prompt(text=template.format(a=a, b=b, place=place, s=b, thing=thing),
                              corrupt=template.format(a=a, b=b, place=place, s=a, thing=thing),
                              answer=f" {a}", wrong=f" {b}"))
    return prompts


def _facts() -> list[Prompt]:
    return [Prompt(template.format(x=x)) for template, values in FACT_TEMPLATES for x in values]


def _generation() -> list[Prompt]:
    return [Prompt(template.format(a=a, place=place, thing=thing))
            for template in GENERATION_TEMPLATES for a, place, thing in zip(NAMES, PLACES * 2, THINGS * 3)]


KINDS: dict[str, Callable[[], list[Prompt]]] = {"ioi": _ioi, "facts": _facts, "generation": _generation}

KIND_WRITES: dict[str, tuple[tuple[str, str], ...]] = {
    "facts": (("steering", "batched"), ("zero_ablation", "batched"), ("generation_steering", "batched")),
    "ioi": (("activation_patching", "batched"), ("attribution_patching", "batched")),
    "generation": (("steering", "generation"), ("zero_ablation", "generation")),
}
"""the write cells (methodology, workload) that draw from each kind: a prompt is kept for a family
only if every one of them moves it by the oracle's margin there"""

WEAK_PROMPTS = Path(__file__).with_name("weak_prompts.json")
"""per family and kind, the screened prompts some write of ``KIND_WRITES`` moves by less than the
oracle's margin (EFFECT.min_margin x STRICT) on the family's default model, raw hooks, fp32, the
default CellParams; made by ``benchmarks/prompt_margins.py --screen`` (see the file's header)"""


@cache
def _weak() -> dict:
    return json.loads(WEAK_PROMPTS.read_text()) if WEAK_PROMPTS.exists() else {"families": {}}


def screened() -> dict[str, dict[str, int]]:
    """family -> kind -> how many prompts of the shuffle the screen measured (a set larger than
    the screened ones left after dropping the weak is unscreened past that point)"""
    return _weak().get("screened", {})


def weak_prompts(family: str, kind: str) -> frozenset[str]:
    """The texts of ``kind`` dropped for ``family`` (none for a family never screened)."""
    return frozenset(_weak()["families"].get(family, {}).get(kind, ()))


def pool(methodology: str, workload: str, size: int | None, family: str | None = None) -> tuple[Prompt, ...]:
    """What a cell or a load request draws its prompts from: the built-in set (``size`` None: 8
    facts, 4 IOI pairs) or ``size`` templated ones (IOI pairs for the patching methodologies,
    generation prompts for the generation workload, factual prompts otherwise), screened for
    ``family`` when given."""
    paired = methodology in PAIRED
    if size is None:
        return IOI_PAIRS if paired else FACTS
    return prompt_set("ioi" if paired else "generation" if workload == "generation" else "facts", size, family)


def prompt_set(kind: str, size: int, family: str | None = None) -> tuple[Prompt, ...]:
    """The first ``size`` prompts of ``kind``'s seeded shuffle; for ``family``, of the shuffle
    without that family's weak prompts (``weak_prompts``), so its sets are nested too."""
    every = KINDS[kind]()
    random.Random(SEED).shuffle(every)
    if family is not None:
        weak = weak_prompts(family, kind)
        every = [p for p in every if p.text not in weak]
    if not 1 <= size <= len(every):
        raise SpecError(f"prompts: {size} {kind} prompts asked; the templates make 1 to {len(every)}"
                        + (f" for {family}" if family is not None else ""))
    return tuple(every[:size])
