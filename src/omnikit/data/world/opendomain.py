"""Open-domain text: questions about arbitrary words and things, and plain sentences to be transcribed.

Sources (all offline): Debian ``wordnet-base`` (``/usr/share/wordnet/data.*``: noun glosses give "What is a
harpsichord?"-style questions, gloss examples give plain sentences), the element descriptions in
``mendeleev`` (questions and sentences about elements) and the docstrings of Python's standard library
(plain sentences). Every item has a *topic* (a WordNet lexicographer file such as ``noun.food``, an element,
a stdlib module) so that dev and test can be kept on topics never seen in training.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from omnikit.data.world.facts import Question, element_table, spoken_numbers

WORDNET_DIR = Path("/usr/share/wordnet")

LEXFILES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive "
    "noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity "
    "noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition "
    "verb.communication verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
"""WordNet lexicographer file names by number (the topic of a synset)."""

WORD_TEMPLATES = [
    "What is {a} {word}?",
    "What does the word {word} mean?",
    "Can you explain what {a} {word} is?",
    "What's the meaning of {word}?",
    "Could you define {word} for me?",
    "I'd like to know, what is {a} {word}?",
]
ELEMENT_TEMPLATES = [
    "Tell me something about {element}.",
    "What is {element} used for?",
    "Can you describe the element {element}?",
    "What do you know about {element}?",
]

STDLIB_MODULES = (
    "abc argparse array asyncio base64 bisect calendar collections colorsys configparser contextlib copy csv "
    "dataclasses datetime decimal difflib email enum fileinput fnmatch fractions functools getpass gettext "
    "glob gzip hashlib heapq hmac html http imaplib inspect io ipaddress itertools json keyword locale logging "
    "mailbox math mimetypes netrc numbers operator os pathlib pickle platform pprint queue random re sched "
    "secrets select shelve shlex shutil signal smtplib socket sqlite3 statistics string struct subprocess "
    "tarfile tempfile textwrap threading time timeit tokenize traceback turtle unicodedata unittest "
    "urllib uuid warnings weakref wave zipfile zlib"
).split()


@dataclass(frozen=True)
class Sentence:
    """A plain sentence (not addressed to the assistant) with its topic (the split unit) and source."""

    text: str
    topic: str
    source: str


_OK = re.compile(r"[A-Za-z0-9 ,.'?!;:-]+")


def clean_sentence(text: str, min_words: int = 4, max_words: int = 20) -> str | None:
    """Normalise a sentence for speech (numbers in words, capital first letter, final period) or None."""
    text = re.sub(r"\([^)]*\)", "", text).replace("`", "").replace('"', "").strip()
    text = re.sub(r"\s+", " ", text).strip(" ;:,-")
    if not text or not _OK.fullmatch(text) or re.search(r"[A-Za-z]\d|\d[A-Za-z]", text):
        return None  # "IPv4", "3D": no clean spoken form
    words = text.split()
    if not min_words <= len(words) <= max_words:
        return None
    text = spoken_numbers(text)
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."


def article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


@lru_cache(maxsize=2)
def wordnet_synsets(pos: str = "noun", root: Path = WORDNET_DIR) -> dict[str, tuple[str, list[str], str]]:
    """``offset -> (lexfile, words, gloss)`` parsed from ``data.<pos>``."""
    path = Path(root) / f"data.{pos}"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: apt-get install -y wordnet-base")
    out = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        head, _, gloss = line.partition(" | ")
        f = head.split()
        count = int(f[3], 16)
        words = [f[4 + 2 * i] for i in range(count)]
        out[f[0]] = (LEXFILES[int(f[1])], words, gloss.strip())
    return out


def split_gloss(gloss: str) -> tuple[str, list[str]]:
    """A WordNet gloss -> (definition, quoted example sentences)."""
    examples = re.findall(r'"([^"]+)"', gloss)
    definition = re.sub(r'"[^"]*"', "", gloss).split(";")[0].strip()
    return definition, examples


@lru_cache(maxsize=1)
def common_nouns(root: Path = WORDNET_DIR) -> list[tuple[str, str, str]]:
    """``(word, topic, definition)`` for single-word, lower-case nouns seen in sense-tagged text, taking each
    word's most frequent sense."""
    synsets = wordnet_synsets("noun", root)
    out = []
    for line in (Path(root) / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        f = line.split()
        word, synset_cnt, p_cnt = f[0], int(f[2]), int(f[3])
        tagged = int(f[5 + p_cnt])
        offsets = f[6 + p_cnt : 6 + p_cnt + synset_cnt]
        if tagged < 1 or not re.fullmatch(r"[a-z]{4,14}", word) or not offsets:
            continue
        topic, _, gloss = synsets[offsets[0]]
        out.append((word, topic, split_gloss(gloss)[0]))
    return out


def word_questions(root: Path = WORDNET_DIR) -> list[Question]:
    """Every (word, phrasing) question; the entity is the word, the topic its lexicographer file."""
    out = []
    for word, topic, definition in common_nouns(root):
        for i, t in enumerate(WORD_TEMPLATES):
            text = t.format(a=article(word), word=word)
            out.append(Question(text, "open", f"{topic}:{word}", "define", i, i < len(WORD_TEMPLATES) - 1, definition))
    return out


def element_questions() -> list[Question]:
    """Open questions about elements, answered from their mendeleev description."""
    out = []
    for e in element_table():
        desc = str(e["description"] or "")
        for i, t in enumerate(ELEMENT_TEMPLATES):
            text = t.format(element=e["name"])
            ref = desc.split(". ")[0]
            seen = i < len(ELEMENT_TEMPLATES) - 1
            out.append(Question(text, "open", f"element:{e['name']}", "describe", i, seen, ref))
    return out


def wordnet_sentences(root: Path = WORDNET_DIR) -> list[Sentence]:
    """Gloss example sentences of nouns and verbs, topic = lexicographer file."""
    out, seen = [], set()
    for pos in ("noun", "verb"):
        for topic, _, gloss in wordnet_synsets(pos, root).values():
            for ex in split_gloss(gloss)[1]:
                s = clean_sentence(ex)
                if s and s not in seen:
                    seen.add(s)
                    out.append(Sentence(s, topic, "wordnet"))
    return out


def element_sentences() -> list[Sentence]:
    """Sentences of the mendeleev element descriptions, topic = element."""
    out = []
    for e in element_table():
        for part in re.split(r"(?<=\.)\s+", str(e["description"] or "")):
            s = clean_sentence(part)
            if s:
                out.append(Sentence(s, f"element:{e['name']}", "mendeleev"))
    return out


@lru_cache(maxsize=1)
def stdlib_sentences() -> list[Sentence]:
    """First sentences of the docstrings of the standard library modules above and their public top-level
    functions and classes, read from the source files with ``ast`` (so other imports or monkey-patching
    cannot change the list; it depends only on the Python version)."""
    out, seen = [], set()
    for name in STDLIB_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        try:
            tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef) and not n.name.startswith("_")]
        for doc in [ast.get_docstring(tree)] + [ast.get_docstring(n) for n in nodes]:
            if not doc:
                continue
            first = re.split(r"(?<=\.)\s", doc.split("\n\n")[0].replace("\n", " "))[0]
            s = clean_sentence(first, min_words=5)
            if s and s not in seen:
                seen.add(s)
                out.append(Sentence(s, f"stdlib:{name}", "stdlib"))
    return out
