"""The built-in prompt set: short factual prompts and IOI-style clean/corrupt pairs.

IOI pairs differ in exactly one name token (the repeated subject), so the patched position is the
same in both prompts and both families tokenize each name as one token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt; ``corrupt``/``answer``/``wrong`` are set for IOI pairs only."""

    text: str
    corrupt: str | None = None
    answer: str | None = None
    """the clean prompt's correct next token, with its leading space"""
    wrong: str | None = None
    """the corrupt prompt's answer: the clean answer's rival"""


FACTS: tuple[Prompt, ...] = (
    Prompt("The Eiffel Tower is in the city of"),
    Prompt("The capital of Japan is"),
    Prompt("Water freezes at a temperature of zero degrees"),
    Prompt("The first person to walk on the moon was"),
    Prompt("The largest planet in our solar system is"),
    Prompt("The sun rises in the"),
    Prompt("The chemical symbol for gold is"),
    Prompt("Monday, Tuesday, Wednesday,"),
)


def _ioi(a: str, b: str, place: str, thing: str) -> Prompt:
    template = "When {a} and {b} went to the {place}, {s} gave a {thing} to"
    return Prompt(
        text=template.format(a=a, b=b, place=place, s=b, thing=thing),
        corrupt=template.format(a=a, b=b, place=place, s=a, thing=thing),
        answer=f" {a}",
        wrong=f" {b}",
    )


IOI_PAIRS: tuple[Prompt, ...] = (
    _ioi("Lisa", "Mark", "store", "drink"),
    _ioi("John", "Paul", "store", "drink"),
    _ioi("Kate", "Tom", "park", "ball"),
    _ioi("Mark", "John", "office", "letter"),
)
"""the four pairs, of 60 drawn, where patching layer 6 moves the synthetic GPT-2 most (TV 0.08-0.12
against the corrupt run; the earlier Mary/John, Tom/Anna, James/Sarah, David/Emma pairs moved it
0.007-0.052, so a lost patch on one of them was within 2x of what SUPPORTED allows)"""

PAIRED = frozenset({"activation_patching", "attribution_patching"})
"""methodologies that run on clean/corrupt pairs (IOI_PAIRS) instead of FACTS"""
