"""TriviaQA proxy: a synthetic knowledge base of people and their attributes.

Each person has one value per attribute (birth city, occupation, university, birth
year). The information content is ``n_people * sum_a log2(n_values_a)`` bits, which can
be set above what the smaller scaled-down models can store. Two styles:

* ``prose``: facts as short biographies and as question/answer pairs; evaluation asks
  the same questions ("Question: Where was X born?\nAnswer:" -> " Kel").
* ``records``: one compact record per document, attributes in a random order
  ("Foo Bar | job baker | city Kel | year 1953 | university Dor"); evaluation completes
  "Foo Bar | city" -> " Kel". About 4 tokens per fact instead of about 10: the token
  budget buys ~2.5x more exposures per fact.
* ``values``: high-entropy records in the style of Allen-Zhu & Li's capacity runs
  (arXiv 2404.05405): single-token first and last names and ``n_value_attributes`` values,
  each one of ``n_values`` dedicated value tokens, in a fixed order
  ("~Dera ~Kolu : v017| v203| ... v045|", about 12 tokens and 64 bits per person at 256
  values and 8 attributes). Names and values are added tokens of the corpus tokenizer
  (``dedicated_tokens``), so each is one token. Evaluation completes a value given the
  name and the earlier values ("~Dera ~Kolu : v017|" -> " v203|", target "v203": the
  greedy generation stops at "|"); ``value_records`` feed the bits-stored evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from optimal_sparsity.data.names import word_pool

JOBS = ["baker", "pilot", "doctor", "farmer", "teacher", "painter", "sailor", "lawyer",
        "nurse", "miner", "singer", "tailor", "chemist", "dentist", "editor", "potter",
        "weaver", "banker", "butcher", "carpenter", "clerk", "cook", "dancer", "driver",
        "engineer", "fisher", "gardener", "hunter", "jeweler", "mason", "poet", "smith"]


STYLES = ("prose", "records", "values")
VALUES_FIELDS = ("n_values", "n_value_attributes")
# Values-style surface forms: one added token each (ASCII markers that no other source writes).
FIRST_NAME = "~{}"
LAST_NAME = " ~{}"
VALUE = "v{:03d}"
VALUE_TOKEN = " {}|"  # a value as written after the name and the earlier values
VALUE_END = "|"  # ends a value: the TriviaQA-proxy task's greedy generation stops there


@dataclass(frozen=True)
class KnowledgeConfig:
    n_people: int = 2000
    n_cities: int = 64
    n_universities: int = 48
    first_year: int = 1900
    n_years: int = 100
    qa_fraction: float = 0.5  # share of knowledge documents written as Q/A pairs (prose)
    facts_per_qa_doc: int = 4
    style: str = "prose"  # or "records", "values"
    n_values: int = 256  # values style: dedicated value tokens
    n_value_attributes: int = 8  # values style: values per person, in a fixed order

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"knowledge: style must be one of {', '.join(STYLES)}")
        if self.n_people < 1 or min(self.n_cities, self.n_universities, self.n_years) < 2:
            raise ValueError("knowledge: need n_people >= 1 and >= 2 values per attribute")
        if not 0.0 <= self.qa_fraction <= 1.0:
            raise ValueError("knowledge: qa_fraction must be in [0, 1]")
        if not (2 <= self.n_values <= 1000 and 1 <= self.n_value_attributes <= 64):
            raise ValueError("knowledge: need 2 <= n_values <= 1000 and "
                             "1 <= n_value_attributes <= 64")

    def to_dict(self) -> dict:
        """The fields, without the values-style knobs when they are at their defaults (so
        the serialised config and the fingerprint of every other corpus stay as they were)."""
        d = dataclasses.asdict(self)
        for name in VALUES_FIELDS:
            if d[name] == _DEFAULTS[name]:
                del d[name]
        return d


# attribute -> (question, biography templates)
_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "city": ("Where was {p} born?",
             ("{p} was born in {v}.", "{p} came into the world in {v}.",
              "The birthplace of {p} is {v}.")),
    "job": ("What is the occupation of {p}?",
            ("{p} works as a {v}.", "{p} earns a living as a {v}.",
             "By profession, {p} is a {v}.")),
    "university": ("Which university did {p} attend?",
                   ("{p} studied at {v} University.", "{p} graduated from {v} University.",
                    "{p} is an alumnus of {v} University.")),
    "year": ("In which year was {p} born?",
             ("{p} was born in the year {v}.", "{p} celebrates a birthday from {v}.",
              "The birth year of {p} is {v}.")),
}
ATTRIBUTES = tuple(_TEMPLATES)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(KnowledgeConfig)}


class KnowledgeBase:
    def __init__(self, cfg: KnowledgeConfig, seed: int) -> None:
        self.cfg = cfg
        rng = random.Random(f"knowledge/{seed}")
        if cfg.style == "values":
            self._init_values(rng)
            return
        self.attributes: tuple[str, ...] = ATTRIBUTES
        cities = word_pool(cfg.n_cities, seed=rng.randrange(2**31))
        unis = word_pool(cfg.n_universities, seed=rng.randrange(2**31),
                         exclude=frozenset(cities))
        years = [str(cfg.first_year + i) for i in range(cfg.n_years)]
        self.values: dict[str, list[str]] = {"city": cities, "job": JOBS, "university": unis,
                                             "year": years}
        n_first = max(8, math.ceil(math.sqrt(cfg.n_people * 2)))
        firsts = word_pool(n_first, seed=rng.randrange(2**31), syllables=(2, 2),
                           exclude=frozenset(cities + unis))
        lasts = word_pool(n_first, seed=rng.randrange(2**31), syllables=(2, 3),
                          exclude=frozenset(cities + unis + firsts))
        pairs = [(f, s) for f in firsts for s in lasts]
        rng.shuffle(pairs)
        self.people = [f"{f} {s}" for f, s in pairs[: cfg.n_people]]
        self.facts = [{a: rng.choice(self.values[a]) for a in ATTRIBUTES} for _ in self.people]

    def _init_values(self, rng: random.Random) -> None:
        cfg = self.cfg
        self.attributes = tuple(f"a{j + 1}" for j in range(cfg.n_value_attributes))
        values = [VALUE.format(j) for j in range(cfg.n_values)]
        self.values = {a: values for a in self.attributes}
        n_names = max(8, math.ceil(math.sqrt(cfg.n_people * 2)))
        firsts = word_pool(n_names, seed=rng.randrange(2**31), syllables=(2, 2))
        lasts = word_pool(n_names, seed=rng.randrange(2**31), syllables=(2, 3),
                          exclude=frozenset(firsts))
        self.first_names, self.last_names = firsts, lasts
        pairs = [(f, s) for f in firsts for s in lasts]
        rng.shuffle(pairs)
        self.people = [FIRST_NAME.format(f) + LAST_NAME.format(s)
                       for f, s in pairs[: cfg.n_people]]
        self.facts = [{a: rng.choice(values) for a in self.attributes} for _ in self.people]

    @property
    def bits(self) -> float:
        """Information content of the knowledge base (bits)."""
        return len(self.people) * sum(math.log2(len(self.values[a])) for a in self.attributes)

    def dedicated_tokens(self) -> list[str]:
        """Strings that must be single tokens (values style: names and values; else none)."""
        if self.cfg.style != "values":
            return []
        values = self.values[self.attributes[0]]
        return ([FIRST_NAME.format(f) for f in self.first_names]
                + [LAST_NAME.format(s) for s in self.last_names]
                + [VALUE_TOKEN.format(v) for v in values])

    def value_prompt(self, i: int, n_earlier: int) -> str:
        """Values style: the name of person ``i`` and its first ``n_earlier`` values."""
        facts = self.facts[i]
        return self.people[i] + " :" + "".join(VALUE_TOKEN.format(facts[a])
                                               for a in self.attributes[:n_earlier])

    def value_records(self) -> list[dict]:
        """Values style: every person as (prefix, value tokens), for the bits-stored
        evaluation (``eval/knowledge_records.jsonl``)."""
        return [{"person": i, "prefix": self.value_prompt(i, 0),
                 "values": [VALUE_TOKEN.format(self.facts[i][a]) for a in self.attributes]}
                for i in range(len(self.people))]

    def biography(self, rng: random.Random, i: int) -> str:
        attrs = list(ATTRIBUTES)
        rng.shuffle(attrs)
        p, facts = self.people[i], self.facts[i]
        return " ".join(rng.choice(_TEMPLATES[a][1]).format(p=p, v=facts[a]) for a in attrs)

    def qa(self, i: int, attr: str) -> tuple[str, str]:
        """(prompt, answer) for one fact, in the evaluation format."""
        if self.cfg.style == "values":
            j = self.attributes.index(attr)
            return self.value_prompt(i, j), VALUE_TOKEN.format(self.facts[i][attr])
        if self.cfg.style == "records":
            return f"{self.people[i]} | {attr}", f" {self.facts[i][attr]}"
        q = _TEMPLATES[attr][0].format(p=self.people[i])
        return f"Question: {q}\nAnswer:", f" {self.facts[i][attr]}"

    def record(self, rng: random.Random, i: int) -> str:
        attrs = list(ATTRIBUTES)
        rng.shuffle(attrs)
        return " | ".join([self.people[i], *(f"{a} {self.facts[i][a]}" for a in attrs)])

    def qa_document(self, rng: random.Random, i: int) -> str:
        attrs = rng.sample(ATTRIBUTES, min(self.cfg.facts_per_qa_doc, len(ATTRIBUTES)))
        return "\n\n".join(p + a for p, a in (self.qa(i, attr) for attr in attrs))

    def document(self, rng: random.Random) -> tuple[str, int]:
        """A training document about a uniformly drawn person -> (text, person)."""
        i = rng.randrange(len(self.people))
        if self.cfg.style == "values":
            return self.value_prompt(i, len(self.attributes)), i
        if self.cfg.style == "records":
            return self.record(rng, i), i
        if rng.random() < self.cfg.qa_fraction:
            return self.qa_document(rng, i), i
        return self.biography(rng, i), i

    def eval_items(self, n: int, seed: int) -> list[dict]:
        """``n`` distinct facts (all of which the training text states)."""
        rng = random.Random(f"knowledge-eval/{seed}")
        keys = [(i, a) for i in range(len(self.people)) for a in self.attributes]
        picked = rng.sample(keys, min(n, len(keys)))
        items = []
        for i, a in picked:
            prompt, answer = self.qa(i, a)
            target = answer.strip()
            if self.cfg.style == "values":
                target = target.removesuffix(VALUE_END)
            items.append({"id": f"kb-{i}-{a}", "task": "triviaqa_proxy", "prompt": prompt,
                          "answer": answer, "target": target, "person": i,
                          "attribute": a})
        return items
