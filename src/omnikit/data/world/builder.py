"""The ``speech_world`` dataset: an offline, synthetic world of spoken questions, answers and duplex streams.

``prepare(root)`` builds everything under ``root`` (cached, deterministic for a seed); ``cuts(part, root)``
returns a lhotse ``CutSet``. What is built, per split (train/dev/test):

- text: fact questions (countries, elements; several phrasings, the last phrasing kept out of training),
  open questions (WordNet words, elements) and plain sentences (WordNet examples, element descriptions,
  stdlib docstrings). Splits are disjoint by entity (a country, an element) and by topic (WordNet
  lexicographer files), so test asks about facts and topics never heard in training.
- answers: the frozen LLM answers every question as text (an injectable ``answerer``), cached in
  ``root/answers.jsonl``.
- ``asr_*``: every question and plain sentence spoken by a user voice at 16 kHz, augmented.
- ``dialogue_*``: the question recordings with ``custom["question"]``/``["answer"]``/``["reference"]``.
- ``duplex_*``: streams of questions, pauses, statements and noise with per-160 ms-chunk state labels.
- ``tts_train``/``tts_dev``: the assistant voice (hibari ``heart``) speaking answers and plain sentences.

Voices: held-out voices appear only in dev (``dev_voices``) or test (``test_voices``) and are marked with
``custom["voice_seen"] = False``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import re
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from omnikit.data.world import duplex as dx
from omnikit.data.world.augment import augment
from omnikit.data.world.facts import Question, all_fact_questions
from omnikit.data.world.opendomain import (
    Sentence,
    element_questions,
    element_sentences,
    stdlib_sentences,
    word_questions,
    wordnet_sentences,
)
from omnikit.data.world.splits import SPLITS, rng_for, split_of
from omnikit.data.world.voices import DEFAULT_VOICES, speak, split_voices
from omnikit.registry import get_registry, param

PARTS = [f"{g}_{s}" for g in ("asr", "dialogue", "duplex") for s in SPLITS] + ["tts_train", "tts_dev"]
FORMAT_VERSION = 1

Answerer = Callable[[str], str]


@dataclass
class SpeechWorldConfig:
    seed: int = param(0, "Seed of every random choice (texts, voices, delivery, augmentation, layout).")
    scale: float = param(1.0, "Multiplies every count below; e.g. 0.01 for a tiny test build.")
    fact_questions: int = param(800, "Spoken fact questions over all splits (countries, elements).")
    open_questions: int = param(400, "Spoken open-domain questions (WordNet words, elements).")
    plain_sentences: int = param(1000, "Plain sentences for ASR (also the statements of duplex streams).")
    duplex_examples: int = param(500, "Duplex streams over all splits.")
    tts_plain_sentences: int = param(200, "Plain sentences spoken by the assistant voice, besides the answers.")
    dev_fraction: float = param(0.1, "Share of entities (and of each count) in dev.")
    test_fraction: float = param(0.1, "Share of entities (and of each count) in test.")
    dev_topics: list[str] = param(
        factory=lambda: ["noun.body", "noun.shape", "verb.emotion"], doc="WordNet topics only in dev."
    )
    test_topics: list[str] = param(
        factory=lambda: ["noun.food", "noun.plant", "verb.consumption", "verb.weather"],
        doc="WordNet topics only in test (open-domain test items on topics absent from training).",
    )
    voices: list[str] = param(
        factory=lambda: list(DEFAULT_VOICES), doc="User voice ids: hibari:heart, piper:joe, espeak:<accent>."
    )
    dev_voices: list[str] = param(factory=lambda: ["espeak:en-US-nyc"], doc="Voices heard in dev and test only.")
    test_voices: list[str] = param(factory=lambda: ["espeak:en-029"], doc="Voices heard in test only.")
    unseen_voice_fraction: float = param(0.5, "In dev/test, share of utterances spoken by held-out voices.")
    sample_rate: int = param(16_000, "Rate (Hz) of user speech (asr, dialogue, duplex).")
    tts_voice: str = param("hibari:heart", "The assistant's voice for the tts parts.")
    tts_sample_rate: int = param(24_000, "Rate (Hz) of the tts parts (hibari's native rate is 24 kHz).")
    speed_range: list[float] = param(factory=lambda: [0.85, 1.2], doc="Speaking-rate factor range of user voices.")
    piper_noise: float = param(0.0, "Piper generator noise; > 0 is more natural but not bit-reproducible.")
    noise_prob: float = param(0.5, "Probability of additive noise (white/pink/brown) on user speech.")
    snr_db: list[float] = param(factory=lambda: [5.0, 30.0], doc="SNR range (dB) of additive noise.")
    reverb_prob: float = param(0.3, "Probability of synthetic-RIR reverberation on user speech.")
    rt60: list[float] = param(factory=lambda: [0.15, 0.7], doc="Reverberation time range (s).")
    gain_db: list[float] = param(factory=lambda: [-10.0, 3.0], doc="Random gain range (dB).")
    pad_range: list[float] = param(factory=lambda: [0.05, 0.4], doc="Silence (s) around asr/dialogue utterances.")
    respond_chunks: int = param(2, "Chunks labelled respond/ignore after a question/statement ends.")
    pause_range: list[float] = param(factory=lambda: [0.3, 0.9], doc="Mid-question pause range (s) in duplex.")
    llm: str = param("smollm2-135m-instruct", "Frozen LLM (HFCausalLM model) that writes the answers.")
    answer_max_tokens: int = param(64, "Longest answer in LLM tokens.")
    answer_batch_size: int = param(64, "Questions answered per batched greedy generate call.")
    answer_threads: int = param(1, "Torch threads while answering (1 is fastest on a shared 2-core CPU).")
    workers: int = param(
        2, "Synthesis processes, running while the LLM answers in the main process; 0 renders inline (tests)."
    )
    # Your own text and language. Left at None, each leaves the build exactly as it was (and its fingerprint).
    questions_file: str | None = param(
        None, "A JSONL file of your own questions, one object a line: {\"question\": ..., \"answer\": ... "
        "(optional: the frozen LLM answers the others), \"split\": train|dev|test (optional: a stable hash)}. "
        "They replace the built-in fact and open questions.")
    sentences_file: str | None = param(
        None, "A UTF-8 text file of your own plain sentences, one a line (ASR, and the statements of duplex "
        "streams); they replace the built-in ones.")
    language: str | None = param(
        None, "An espeak-ng language (de, fr-fr, es, pt-br, ...: `espeak-ng --voices`): every voice, user and "
        "assistant, becomes espeak-ng speaking it, except voices you set yourself; no held-out voices then.")
    resume_audio: bool | None = param(
        None, "Keep each rendered file's facts beside it (<id>.json) and skip files already rendered when "
        "prepare runs again after an interruption. None: on with questions_file.")


USER_OPTIONS = ("questions_file", "sentences_file", "language", "resume_audio")
"""Options added after the first builds: left at None they are kept out of the fingerprint."""


def with_language(config: SpeechWorldConfig) -> SpeechWorldConfig:
    """``config`` with ``language`` applied: the voices still at their defaults become espeak-ng speaking it
    (user voices, assistant voice) and the default held-out voices are dropped (there is one voice id)."""
    lang = config.language
    if not lang:
        return config
    default = SpeechWorldConfig()
    changes: dict[str, Any] = {}
    if list(config.voices) == list(default.voices):
        changes["voices"] = [f"espeak:{lang}"]
        if list(config.dev_voices) == list(default.dev_voices):
            changes["dev_voices"] = []
        if list(config.test_voices) == list(default.test_voices):
            changes["test_voices"] = []
    if config.tts_voice == default.tts_voice:
        changes["tts_voice"] = f"espeak:{lang}"
    return dataclasses.replace(config, **changes)


def check_language(language: str) -> None:
    """Stop early, with the way to list them, when espeak-ng has no voice for ``language``."""
    import subprocess

    from omnikit.data.tts import espeak

    if not espeak.available():
        raise RuntimeError("language needs espeak-ng: apt-get install -y espeak-ng")
    res = subprocess.run(["espeak-ng", "-v", language, "-q", "a"], capture_output=True, timeout=60)
    if res.returncode != 0:
        raise ValueError(f"espeak-ng has no language {language!r}; `espeak-ng --voices` lists them")


@dataclass
class UserText:
    """Your own questions (with the answers given, if any) and plain sentences, read from files."""

    questions: list[Question]
    answers: dict[str, str]
    splits: dict[str, str]  # question text -> the split given in the file
    sentences: list[Sentence]
    digest: str

    @classmethod
    def read(cls, questions_file: str | None, sentences_file: str | None) -> UserText:
        h = hashlib.sha1()
        questions, answers, splits = [], {}, {}
        if questions_file:
            path = Path(questions_file).expanduser()
            raw = path.read_bytes()
            h.update(raw)
            for n, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as err:
                    raise ValueError(f"{path}:{n}: not a JSON object ({err})") from None
                text = " ".join(str(row.get("question", "") if isinstance(row, dict) else "").split())
                if not text:
                    raise ValueError(f"{path}:{n}: needs a non-empty \"question\"")
                if text in splits or any(q.text == text for q in questions):
                    continue  # a repeated question is one question
                answer = " ".join(str(row.get("answer") or "").split())
                split = str(row.get("split") or "").strip().lower()
                if split and split not in SPLITS:
                    raise ValueError(f"{path}:{n}: split must be one of {', '.join(SPLITS)}, got {split!r}")
                questions.append(Question(text=text, kind="user", entity=f"user:{text}", relation="user",
                                          template=0, template_seen=True, reference=answer))
                if answer:
                    answers[text] = answer
                if split:
                    splits[text] = split
            if not questions:
                raise ValueError(f"{path}: no questions (one JSON object a line: {{\"question\": ...}})")
        sentences = []
        if sentences_file:
            path = Path(sentences_file).expanduser()
            raw = path.read_bytes()
            h.update(b"\0" + raw)
            lines = dict.fromkeys(" ".join(ln.split()) for ln in raw.decode("utf-8").splitlines())
            sentences = [Sentence(text=t, topic=f"user:{t}", source=str(path)) for t in lines if t]
        return cls(questions, answers, splits, sentences, h.hexdigest()[:16])

    def split_of(self, q: Question, config: SpeechWorldConfig) -> str:
        """The split given in the file, else a stable hash of the question (``dev_fraction``, ``test_fraction``)."""
        return self.splits.get(q.text) or split_of(q.entity, config.seed, config.dev_fraction, config.test_fraction)


class LLMAnswerer:
    """The default answerer: the frozen LLM's greedy text reply, batched with ``transformers`` ``generate``.

    Uses the model and tokenizer of ``HFCausalLM`` (loaded on first use) with its system prompt and chat
    template; ``batch(questions)`` answers many questions at once (left padding), ``__call__`` one.
    """

    def __init__(self, model: str, max_new_tokens: int, batch_size: int = 64, threads: int = 1) -> None:
        self.model, self.max_new_tokens, self.batch_size, self.threads = model, max_new_tokens, batch_size, threads
        self.name = f"{model}:{max_new_tokens}"
        self._llm: Any = None

    def _load(self) -> Any:
        if self._llm is None:
            # the llm plugin, built by name through its registry: data never imports components
            self._llm = get_registry("llm").build("hf_causal_lm", {"model": self.model, "device": "cpu"})
        return self._llm

    def __call__(self, question: str) -> str:
        return self.batch([question])[0]

    def batch(self, questions: list[str]) -> list[str]:
        import torch

        llm = self._load()
        tok, hf = llm.tokenizer, llm.llm
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        system = llm.config.system_prompt
        texts = [
            tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": q}],
                                    tokenize=False, add_generation_prompt=True)
            for q in questions
        ]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)  # one thread: far faster than two on a shared 2-core CPU
        try:
            with torch.inference_mode():
                out = hf.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                  pad_token_id=tok.pad_token_id)
        finally:
            torch.set_num_threads(threads)
        return [str(tok.decode(row, skip_special_tokens=True)).strip() for row in out[:, enc["input_ids"].shape[1]:]]


def llm_answerer(model: str, max_new_tokens: int, batch_size: int = 64, threads: int = 1) -> Answerer:
    """The frozen LLM as an answerer (see ``LLMAnswerer``)."""
    return LLMAnswerer(model, max_new_tokens, batch_size, threads)


def _speakable(text: str) -> bool:
    """Whether the assistant voice can read ``text``: non-empty Latin script (answers sometimes hold CJK)."""
    return bool(text) and re.fullmatch(r"[\x20-\x7E\u00A0-\u017F\u2018-\u201D\u2013\u2014\u2026]+", text) is not None


def clean_answer(text: str) -> str:
    """Drop a sentence cut off by the token limit (keep at least the first sentence)."""
    text = re.sub(r"\s+", " ", text).strip()
    if text and text[-1] not in ".!?":
        ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", text)]
        if ends:
            text = text[: ends[-1]]
    return text


class SpeechWorldDataset:
    """Offline synthetic speech world: spoken fact/open questions with LLM answers, ASR, duplex and TTS parts.

    Built from packaged voices (hibari, piper joe, espeak-ng accents) and fact sources (countryinfo,
    mendeleev, WordNet, stdlib docstrings); splits are disjoint by entity, topic and held-out voice.
    Pass ``answerer=`` (``str -> str``) to replace the frozen LLM, e.g. in tests.
    """

    config_class = SpeechWorldConfig
    parts = PARTS

    def __init__(self, config: SpeechWorldConfig, answerer: Answerer | None = None, **_: Any) -> None:
        self.config = with_language(config)
        self.answerer = answerer or llm_answerer(
            config.llm, config.answer_max_tokens, config.answer_batch_size, config.answer_threads
        )
        self._user: UserText | None = None

    # ------------------------------------------------------------------ public
    def cuts(self, part: str, root: Path):
        """The CutSet of ``part`` (see ``parts``), audio paths resolved under ``root``."""
        from lhotse import CutSet

        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; parts: {PARTS}")
        path = Path(root) / "manifests" / f"{part}.jsonl.gz"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: run prepare({root}) first")
        return CutSet.from_jsonl(path).with_recording_path_prefix(str(Path(root).resolve()))

    @property
    def user(self) -> UserText | None:
        """Your own questions and sentences (``questions_file``, ``sentences_file``), read once; None without."""
        c = self.config
        if self._user is None and (c.questions_file or c.sentences_file):
            self._user = UserText.read(c.questions_file, c.sentences_file)
        return self._user

    @property
    def resume_audio(self) -> bool:
        """Whether rendered files are kept with their facts and skipped on a second run (see the option)."""
        c = self.config
        return bool(c.questions_file) if c.resume_audio is None else c.resume_audio

    def fingerprint(self) -> str:
        """Digest of everything that changes the built data."""
        cfg = dataclasses.asdict(self.config)
        cfg.pop("workers")
        for key in USER_OPTIONS:  # options left at None change nothing: the digest stays what it was
            if cfg[key] is None or key == "resume_audio":
                cfg.pop(key)
        if self.user is not None:
            cfg["user_text"] = self.user.digest
        cfg["answerer"] = getattr(self.answerer, "name", "custom")
        cfg["format"] = FORMAT_VERSION
        return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]

    def prepare(self, root: Path) -> None:
        """Build every part under ``root``; a second call with the same config returns at once."""
        root = Path(root)
        done = root / "prepared.json"
        if done.exists() and json.loads(done.read_text()).get("fingerprint") == self.fingerprint():
            return
        root.mkdir(parents=True, exist_ok=True)
        clock = [time.perf_counter()]

        def lap() -> float:
            clock.append(time.perf_counter())
            return round(clock[-1] - clock[-2], 2)

        plan = self.plan()
        timings = {"text": lap()}
        questions = [q for s in SPLITS for q in plan[s]["questions"]]
        given = self.user.answers if self.user is not None else {}
        user_jobs = self._user_jobs(plan)
        cfg = dataclasses.asdict(self.config)
        if self.config.language:
            check_language(self.config.language)
        if self.resume_audio:
            cfg["_resume"] = True
        with self._pool() as pool:
            # user speech needs no answers: it renders in worker processes while the LLM answers here
            pending = pool.map(_render_job, [(j, cfg, str(root)) for j in user_jobs], chunksize=4)
            cpu = time.process_time()
            answers = self._answers(root, [q for q in questions if q.text not in given])
            answers.update(given)
            timings["answers"] = lap()
            timings["answers_cpu"] = round(time.process_time() - cpu, 1)
            user_metas = list(tqdm(pending, total=len(user_jobs), desc="speech_world: user audio"))
            timings["user_audio_after_answers"] = lap()
            tts_jobs = self._tts_jobs(plan, answers)
            pending = pool.map(_render_job, [(j, cfg, str(root)) for j in tts_jobs], chunksize=4)
            tts_metas = list(tqdm(pending, total=len(tts_jobs), desc="speech_world: assistant audio"))
            timings["assistant_audio"] = lap()
        jobs, metas = user_jobs + tts_jobs, user_metas + tts_metas
        self._write_manifests(root, jobs, metas, answers)
        timings["manifests"] = lap()
        usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        timings["cpu_process_and_children"] = round(sum(u.ru_utime + u.ru_stime for u in usage), 1)
        summary = {p: sum(1 for j in jobs if p in j["parts"]) for p in PARTS}
        hours = {p: round(sum(m["num_samples"] / m["sample_rate"] for j, m in zip(jobs, metas, strict=True)
                              if p in j["parts"]) / 3600, 3) for p in PARTS}
        info = {"fingerprint": self.fingerprint(), "counts": summary, "hours": hours, "seconds": timings}
        done.write_text(json.dumps(info, indent=1))

    # ------------------------------------------------------------------ text plan
    def _count(self, n: int, split: str) -> int:
        c = self.config
        share = {"train": 1 - c.dev_fraction - c.test_fraction, "dev": c.dev_fraction, "test": c.test_fraction}
        return max(1, int(round(n * c.scale * share[split]))) if n > 0 else 0

    def _entity_split(self, key: str) -> str:
        c = self.config
        if key.startswith(("country:", "element:", "stdlib:", "user:")):
            return split_of(key, c.seed, c.dev_fraction, c.test_fraction)
        topic = key.split(":")[0]
        return "test" if topic in c.test_topics else "dev" if topic in c.dev_topics else "train"

    def _sample(self, items: list, n: int, *key: object) -> list:
        if not items or n <= 0:
            return []
        rng = rng_for(self.config.seed, *key)
        idx = rng.choice(len(items), size=min(n, len(items)), replace=False)
        return [items[i] for i in sorted(idx)]

    def plan(self) -> dict[str, dict[str, list]]:
        """Texts per split: ``questions`` (fact and open), ``sentences`` and ``statements`` (the sentences
        that are not questions, spoken to someone else in duplex streams); deterministic for the seed."""
        c, user = self.config, self.user
        own_q = user is not None and bool(user.questions)
        own_s = user is not None and bool(user.sentences)
        facts = [] if own_q else all_fact_questions()
        opens = [] if own_q else word_questions() + element_questions()
        sentences = user.sentences if own_s else wordnet_sentences() + element_sentences() + stdlib_sentences()
        out: dict[str, dict[str, list]] = {}
        for split in SPLITS:
            def keep(q: Question, split: str = split) -> bool:
                return self._entity_split(q.entity) == split and (split != "train" or q.template_seen)

            f = self._sample([q for q in facts if keep(q)], self._count(c.fact_questions, split), "facts", split)
            o = self._sample([q for q in opens if keep(q)], self._count(c.open_questions, split), "open", split)
            if own_q:  # every one of your questions, in its split
                f, o = [q for q in user.questions if user.split_of(q, c) == split], []
            pool = [s for s in sentences if self._entity_split(s.topic) == split]
            s = pool if own_s else self._sample(pool, self._count(c.plain_sentences, split), "plain", split)
            out[split] = {"questions": f + o, "sentences": s}
            out[split]["statements"] = [x for x in s if not x.text.endswith("?")]
        return out

    # ------------------------------------------------------------------ answers
    def _answers(self, root: Path, questions: list[Question]) -> dict[str, str]:
        name = getattr(self.answerer, "name", "custom")
        cache_path = root / "answers.jsonl"
        cache: dict[str, str] = {}
        if cache_path.exists():
            for line in cache_path.read_text().splitlines():
                row = json.loads(line)
                if row["answerer"] == name:
                    cache[row["question"]] = row["answer"]
        todo = sorted({q.text for q in questions} - set(cache), key=lambda t: (len(t), t))  # less padding
        size = getattr(self.answerer, "batch_size", 1) if hasattr(self.answerer, "batch") else 1
        bar = tqdm(total=len(todo), desc="speech_world: answers", disable=not todo)
        with cache_path.open("a") as f:
            for i in range(0, len(todo), size):
                group = todo[i : i + size]
                raw = self.answerer.batch(group) if size > 1 else [self.answerer(t) for t in group]  # type: ignore[attr-defined]
                for text, answer in zip(group, raw, strict=True):
                    cache[text] = clean_answer(answer)
                    f.write(json.dumps({"answerer": name, "question": text, "answer": cache[text]}) + "\n")
                f.flush()
                bar.update(len(group))
        bar.close()
        return cache

    # ------------------------------------------------------------------ jobs
    def _voice(self, split: str, rng: np.random.Generator) -> str:
        seen, unseen = split_voices(self.config.voices, self.config.dev_voices, self.config.test_voices)[split]
        if unseen and rng.random() < self.config.unseen_voice_fraction:
            return str(rng.choice(unseen))
        return str(rng.choice(seen))

    def _user_jobs(self, plan: dict[str, dict[str, list]]) -> list[dict]:
        """Questions and sentences spoken by user voices (asr, dialogue) and duplex streams."""
        c, jobs = self.config, []
        for split in SPLITS:
            qs, ss = plan[split]["questions"], plan[split]["sentences"]
            for i, item in enumerate(qs + ss):
                uid = f"{split}_utt{i:05d}"
                is_q = isinstance(item, Question)
                parts = [f"asr_{split}"] + ([f"dialogue_{split}"] if is_q else [])
                info = item.to_dict() if is_q else dataclasses.asdict(item)
                info["kind"] = item.kind if is_q else "plain"
                jobs.append({"type": "utt", "uid": uid, "split": split, "text": item.text, "parts": parts,
                             "voice": self._voice(split, rng_for(c.seed, "voice", uid)), "info": info})
            for i in range(self._count(c.duplex_examples, split)):
                jobs.append(self._duplex_job(f"{split}_dup{i:05d}", split, qs, plan[split]["statements"]))
        return jobs

    def _tts_jobs(self, plan: dict[str, dict[str, list]], answers: dict[str, str]) -> list[dict]:
        """The assistant voice speaking the train/dev answers and some plain sentences."""
        c, jobs = self.config, []
        for split in ("train", "dev"):
            qs, ss = plan[split]["questions"], plan[split]["sentences"]
            speakable = bool if c.language else _speakable  # espeak-ng reads any script of its language
            texts = list(dict.fromkeys(answers[q.text] for q in qs if speakable(answers.get(q.text, ""))))
            extra = [s.text for s in self._sample(ss, self._count(c.tts_plain_sentences, split), "tts", split)]
            for i, text in enumerate(texts + extra):
                kind = "answer" if i < len(texts) else "plain"
                jobs.append({"type": "tts", "uid": f"{split}_tts{i:05d}", "split": split, "text": text,
                             "parts": [f"tts_{split}"], "voice": c.tts_voice, "info": {"kind": kind}})
        return jobs

    def _duplex_job(self, uid: str, split: str, qs: list[Question], ss: list[Sentence]) -> dict:
        rng = rng_for(self.config.seed, "duplex", uid)
        scenarios = [s for s in dx.SCENARIOS if (qs or "question" not in s) and (ss or "statement" not in s)]
        weights = np.array([{"question": 3, "paused_question": 3, "statement_then_question": 2,
                             "noise_then_question": 1, "statement": 2, "noise": 1}[s] for s in scenarios], float)
        scenario = str(rng.choice(scenarios, p=weights / weights.sum()))
        question = qs[int(rng.integers(len(qs)))] if "question" in scenario else None
        statement = ss[int(rng.integers(len(ss)))].text if "statement" in scenario else None
        voice = self._voice(split, rng)
        other = self._voice(split, rng) if rng.random() < 0.5 else voice
        info = {"scenario": scenario, "kind": question.kind if question else "plain",
                "question": question.to_dict() if question else None, "statement": statement}
        return {"type": "duplex", "uid": uid, "split": split, "parts": [f"duplex_{split}"], "voice": voice,
                "other_voice": other, "text": question.text if question else (statement or ""), "info": info}

    # ------------------------------------------------------------------ audio
    def _pool(self) -> Any:
        """``workers`` synthesis processes, or an inline stand-in for ``workers=0``."""
        if self.config.workers > 0:
            return ProcessPoolExecutor(self.config.workers, mp_context=multiprocessing.get_context("fork"))
        return _InlinePool()

    def _write_manifests(self, root: Path, jobs: list[dict], metas: list[dict], answers: dict[str, str]) -> None:
        from lhotse import AudioSource, CutSet, MonoCut, Recording, SupervisionSegment

        by_part: dict[str, list] = {p: [] for p in PARTS}
        seen_voices, _ = split_voices(self.config.voices, self.config.dev_voices, self.config.test_voices)["train"]
        for job, meta in zip(jobs, metas, strict=True):
            rec = Recording(job["uid"], [AudioSource("file", [0], meta["path"])], meta["sample_rate"],
                            meta["num_samples"], meta["num_samples"] / meta["sample_rate"])
            voice = job["voice"]
            for part in job["parts"]:
                custom = {"voice": voice, "voice_detail": meta["detail"], "split": job["split"],
                          "kind": job["info"]["kind"], "voice_seen": voice in seen_voices,
                          "augment": meta.get("augment", "")}
                sups = [SupervisionSegment(f"{part}-{job['uid']}", job["uid"], meta["speech_start"],
                                           meta["speech_dur"], 0, text=job["text"], speaker=voice)]
                if job["type"] == "utt":
                    info = job["info"]
                    custom.update({k: info[k] for k in ("entity", "relation", "reference", "template_seen", "topic",
                                                         "source") if k in info})
                    if part.startswith("dialogue"):
                        custom.update({"question": job["text"], "answer": answers[job["text"]]})
                elif job["type"] == "duplex":
                    custom.update(self._duplex_custom(job, meta, answers))
                    sups = self._duplex_supervisions(part, job, meta)
                by_part[part].append(MonoCut(f"{part}-{job['uid']}", 0.0, rec.duration, 0, sups, recording=rec,
                                             custom=custom))
        out = root / "manifests"
        out.mkdir(exist_ok=True)
        for part, cuts in by_part.items():
            CutSet.from_cuts(cuts).to_file(out / f"{part}.jsonl.gz")

    @staticmethod
    def _duplex_custom(job: dict, meta: dict, answers: dict[str, str]) -> dict:
        q = job["info"]["question"]
        out = {"scenario": job["info"]["scenario"], "state_labels": meta["labels"],
               "speech_end": meta["speech_end"], "events": meta["events"], "other_voice": job["other_voice"]}
        if q:
            out.update({"question": q["text"], "answer": answers[q["text"]], "reference": q["reference"],
                        "entity": q["entity"], "relation": q["relation"], "template_seen": q["template_seen"],
                        "kind": q["kind"]})
        return out

    @staticmethod
    def _duplex_supervisions(part: str, job: dict, meta: dict) -> list:
        """The question first (if any), then statements; mid-question pauses stay inside one supervision."""
        from lhotse import SupervisionSegment

        ev = meta["events"]
        q = [e for e in ev if e["kind"] == "question_part"]
        st = [e for e in ev if e["kind"] == "statement"]
        sups = []
        if q:
            sups.append(SupervisionSegment(f"{part}-{job['uid']}-q", job["uid"], q[0]["start"],
                                           q[-1]["end"] - q[0]["start"], 0, text=job["info"]["question"]["text"],
                                           speaker=job["voice"]))
        for k, e in enumerate(st):
            sups.append(SupervisionSegment(f"{part}-{job['uid']}-s{k}", job["uid"], e["start"], e["end"] - e["start"],
                                           0, text=e["text"], speaker=job["other_voice"]))
        if not sups:  # noise only: an empty transcript over the whole stream
            sups.append(SupervisionSegment(f"{part}-{job['uid']}-n", job["uid"], 0.0, meta["num_samples"] /
                                           meta["sample_rate"], 0, text="", speaker=None))
        return sups


# ---------------------------------------------------------------------- workers (module level: picklable)
class _InlinePool:
    """Runs ``map`` lazily in this process (``workers=0``)."""

    def __enter__(self) -> _InlinePool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable, items: list, chunksize: int = 1) -> Any:
        return map(fn, items)


def _job_key(job: dict, cfg: dict) -> str:
    """What a rendered file depends on: the job and every setting but the number of workers."""
    blob = json.dumps([job, {k: v for k, v in cfg.items() if k not in ("workers", "_resume")}], sort_keys=True,
                      default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def _augment(wav: np.ndarray, sr: int, rng: np.random.Generator, cfg: dict) -> tuple[np.ndarray, str]:
    return augment(wav, sr, rng, noise_prob=cfg["noise_prob"], snr_db=tuple(cfg["snr_db"]),
                   reverb_prob=cfg["reverb_prob"], rt60=tuple(cfg["rt60"]), gain_db=tuple(cfg["gain_db"]))


def _speak(voice: str, text: str, rng: np.random.Generator, cfg: dict, sr: int):
    return speak(voice, text, rng, sr, tuple(cfg["speed_range"]), cfg["piper_noise"])


def _render_job(arg: tuple[dict, dict, str]) -> dict:
    """Synthesise one job's audio into ``root/audio/<split>/<uid>.wav``; returns what the manifest needs."""
    job, cfg, root = arg
    rel = f"audio/{job['split']}/{job['uid']}.wav"
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if cfg.get("_resume"):  # resume_audio: a file rendered by an earlier, interrupted run of this same job
        side, key = path.with_suffix(".json"), _job_key(job, cfg)
        try:
            kept = json.loads(side.read_text())
            if kept.get("key") == key and path.is_file():
                return kept["meta"]
        except (OSError, ValueError):
            pass
        meta = _render_job((job, {k: v for k, v in cfg.items() if k != "_resume"}, root))
        tmp = side.with_name(f".{side.name}.tmp")
        tmp.write_text(json.dumps({"key": key, "meta": meta}))
        tmp.replace(side)  # written after the audio: a file without its facts is rendered again
        return meta
    rng = rng_for(cfg["seed"], "audio", job["uid"])
    meta: dict[str, Any] = {"path": rel}
    if job["type"] == "tts":
        sr = cfg["tts_sample_rate"]
        utt = _speak(job["voice"], job["text"], rng, {**cfg, "speed_range": [1.0, 1.0]}, sr)
        wav, start = utt.wav, 0.0
        meta.update(detail=utt.detail, speech_start=0.0, speech_dur=len(wav) / sr)
    elif job["type"] == "utt":
        sr = cfg["sample_rate"]
        utt = _speak(job["voice"], job["text"], rng, cfg, sr)
        lead, tail = (rng.uniform(*cfg["pad_range"]) for _ in range(2))
        start = round(lead, 4)
        wav = np.concatenate([np.zeros(int(start * sr), np.float32), utt.wav, np.zeros(int(tail * sr), np.float32)])
        wav, aug = _augment(wav, sr, rng, cfg)
        meta.update(detail=utt.detail, augment=aug, speech_start=start, speech_dur=len(utt.wav) / sr)
    else:
        sr = cfg["sample_rate"]
        wav, extra = _render_duplex(job, cfg, rng, sr)
        meta.update(extra)
    sf.write(path, wav, sr, subtype="PCM_16")
    meta.update(sample_rate=sr, num_samples=len(wav))
    return meta


def _render_duplex(job: dict, cfg: dict, rng: np.random.Generator, sr: int) -> tuple[np.ndarray, dict]:
    scenario, info = job["info"]["scenario"], job["info"]
    pieces: list[tuple[str, np.ndarray, str, bool]] = []
    gaps: list[float] = []
    details = []
    if scenario in ("statement_then_question", "statement"):
        utt = _speak(job["other_voice"], info["statement"], rng, cfg, sr)
        level = 1.0 if job["other_voice"] == job["voice"] else 10 ** (-rng.uniform(0, 12) / 20)
        pieces.append(("statement", utt.wav * level, info["statement"], False))
        gaps.append(float(rng.uniform(0.6, 1.5)))
        details.append(utt.detail)
    if scenario in ("noise_then_question", "noise"):
        pieces.append(("noise", dx.noise_burst(sr, rng, float(rng.uniform(0.3, 1.2))), "", False))
        gaps.append(float(rng.uniform(0.3, 1.0)))
    if "question" in scenario:
        text = info["question"]["text"]
        voice_seed = int(rng.integers(2**31))
        texts = dx.split_question(text, rng) if scenario == "paused_question" else (text,)
        for k, t in enumerate(texts):
            utt = _speak(job["voice"], t, np.random.default_rng(voice_seed), cfg, sr)
            pieces.append(("question_part", utt.wav, t, k == len(texts) - 1))
            details.append(utt.detail)
            if k < len(texts) - 1:
                gaps.append(float(rng.uniform(*cfg["pause_range"])))
    lead = float(rng.uniform(0.1, 1.0))
    wav, events = dx.lay_out(pieces, sr, rng, gaps, lead, cfg["respond_chunks"])
    wav, aug = _augment(wav, sr, rng, cfg)
    labels = dx.chunk_labels(len(wav) / sr, events, cfg["respond_chunks"])
    speech = [e for e in events if e.kind != "noise"]
    q = [e for e in events if e.kind == "question_part"]
    speech_end = q[-1].end if q else (speech[-1].end if speech else None)
    start = speech[0].start if speech else 0.0
    return wav, {"detail": " | ".join(details), "augment": aug, "labels": labels, "speech_end": speech_end,
                 "events": [e.to_dict() for e in events], "speech_start": start,
                 "speech_dur": (speech_end or len(wav) / sr) - start}
