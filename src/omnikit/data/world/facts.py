"""Spoken fact questions from packaged sources, each fact asked in several phrasings.

Countries come from ``countryinfo`` (capital, capital -> country, region, demonym, neighbours) and elements
from ``mendeleev`` (symbol, atomic number both ways, discovery year, discoverers). Numbers are written out
with ``num2words`` because transcripts must say what the voice says. Every question carries its entity, so
splits can keep whole entities (all facts about a country) out of training.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from functools import lru_cache

TEMPLATES: dict[str, list[str]] = {
    "capital": [
        "What is the capital of {country}?",
        "What's the capital city of {country}?",
        "Can you tell me the capital of {country}?",
        "Which city is the capital of {country}?",
        "Do you know what the capital of {country} is?",
        "I was wondering, what is the capital city of {country}?",
    ],
    "capital_of": [
        "{capital} is the capital of which country?",
        "Which country has {capital} as its capital?",
        "Of which country is {capital} the capital?",
        "Tell me, {capital} is the capital of what country?",
    ],
    "region": [
        "Where in the world is {country}?",
        "In which part of the world is {country} located?",
        "Which region is {country} in?",
        "Could you tell me where {country} is?",
    ],
    "demonym": [
        "What do you call people from {country}?",
        "What are the people of {country} called?",
        "How do you refer to someone from {country}?",
    ],
    "neighbours": [
        "Which countries border {country}?",
        "What are the neighbouring countries of {country}?",
        "Which countries share a border with {country}?",
        "Name the countries next to {country}, please.",
    ],
    "symbol": [
        "What is the chemical symbol of {element}?",
        "What's the symbol for {element}?",
        "Which symbol stands for {element} in the periodic table?",
        "How is {element} written as a chemical symbol?",
    ],
    "atomic_number": [
        "What is the atomic number of {element}?",
        "How many protons does {element} have?",
        "What's {element}'s atomic number?",
        "Where is {element} in the periodic table, what number?",
    ],
    "element_of_number": [
        "Which element has atomic number {number}?",
        "What element has {number} protons?",
        "Which chemical element is number {number}?",
    ],
    "discovered": [
        "When was {element} discovered?",
        "In what year was {element} first discovered?",
        "Who discovered {element}?",
        "Do you know who found {element}?",
    ],
}
"""Phrasings per relation. The last phrasing of each relation is kept out of training (``template_seen``)."""


@dataclass(frozen=True)
class Question:
    """A question to be spoken; ``entity`` is the split unit, ``reference`` a short known answer."""

    text: str
    kind: str  # "fact" or "open"
    entity: str
    relation: str
    template: int
    template_seen: bool
    reference: str

    def to_dict(self) -> dict:
        return asdict(self)


def ascii_fold(text: str) -> str:
    """Drop accents (Curaçao -> Curacao) so that every voice can read the name."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def spoken_numbers(text: str) -> str:
    """Write integers out in words, as a speaker says them ("1869" -> "eighteen sixty-nine")."""
    from num2words import num2words

    def word(m: re.Match) -> str:
        n = int(m.group(0))
        return num2words(n, to="year") if 1100 <= n <= 2099 else num2words(n)

    def decimal(m: re.Match) -> str:
        return f"{num2words(int(m.group(1)))} point {' '.join(num2words(int(d)) for d in m.group(2))}"

    text = re.sub(r"(\d+)\.(\d+)", decimal, text)
    return re.sub(r"\d+", word, text)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@lru_cache(maxsize=1)
def country_facts() -> tuple[tuple[str, str, dict, str], ...]:
    """``(entity, relation, slots, reference)`` for every usable country fact in countryinfo."""
    import countryinfo

    countries = countryinfo.all_countries()
    by_code: dict[str, str] = {}
    rows = []
    for c in countries:
        try:
            info = c.info()
        except Exception:  # noqa: BLE001 - a few entries are incomplete
            continue
        name = ascii_fold(str(info.get("name") or "")).strip()
        if not name or not re.fullmatch(r"[A-Za-z .'-]+", name):
            continue
        code = (info.get("ISO") or {}).get("alpha3")
        if code:
            by_code[code] = name
        rows.append((name, info))
    facts = []
    for name, info in rows:
        entity = f"country:{name}"
        capital = ascii_fold(str(info.get("capital") or "")).strip()
        if capital and re.fullmatch(r"[A-Za-z .'-]+", capital):
            facts.append((entity, "capital", {"country": name}, capital))
            facts.append((entity, "capital_of", {"capital": capital}, name))
        region = info.get("subregion") or info.get("region")
        if region:
            facts.append((entity, "region", {"country": name}, str(region)))
        demonym = info.get("demonym")
        if demonym:
            facts.append((entity, "demonym", {"country": name}, ascii_fold(str(demonym))))
        borders = [by_code[b] for b in info.get("borders") or [] if b in by_code]
        if borders:
            facts.append((entity, "neighbours", {"country": name}, _join(sorted(borders))))
    return tuple(facts)


@lru_cache(maxsize=1)
def element_table() -> list[dict]:
    """The 118 elements from mendeleev: name, symbol, atomic number, discovery and description."""
    from mendeleev.fetch import fetch_table

    df = fetch_table("elements")
    cols = ["name", "symbol", "atomic_number", "discoverers", "discovery_year", "description", "uses"]
    return [{k: (None if str(r[k]) == "nan" else r[k]) for k in cols} for _, r in df.iterrows()]


def element_facts() -> tuple[tuple[str, str, dict, str], ...]:
    """``(entity, relation, slots, reference)`` for the elements."""
    from num2words import num2words

    facts = []
    for e in element_table():
        name, entity = str(e["name"]), f"element:{e['name']}"
        number = int(e["atomic_number"])
        facts.append((entity, "symbol", {"element": name}, str(e["symbol"])))
        facts.append((entity, "atomic_number", {"element": name}, str(number)))
        facts.append((entity, "element_of_number", {"number": num2words(number)}, name))
        found = e["discoverers"] or ""
        year = e["discovery_year"]
        if year is not None or found:
            ref = f"{found} {int(year) if year is not None else ''}".strip()
            facts.append((entity, "discovered", {"element": name}, ref))
    return tuple(facts)


def all_fact_questions() -> list[Question]:
    """Every (fact, phrasing) pair as a question, in a fixed order."""
    out = []
    for entity, relation, slots, ref in country_facts() + element_facts():
        templates = TEMPLATES[relation]
        for i, template in enumerate(templates):
            text = spoken_numbers(template.format(**slots))
            out.append(Question(text, "fact", entity, relation, i, i < len(templates) - 1, ref))
    return out
