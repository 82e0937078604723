"""GSM8K and GSM-Plus proxies: multi-step arithmetic word problems.

A problem tracks one person's count of some item through 2-4 operations (add,
subtract, optionally double/triple) and asks for the final count. The chain of
thought writes one equation per step and ends with ``#### N``, as GSM8K does::

    Question: Lira has 7 shells. Lira finds 5 shells. Lira sells 3 shells.
    How many shells does Lira have now?
    Answer: 7 + 5 = 12. 12 - 3 = 9. #### 9

A problem's *composition* is its start value and its sequence of (operation, operand);
names, items and phrasings are surface. Evaluation problems are compositions that never
occur in the training text. The GSM-Plus proxy perturbs each held-out problem: a
distractor sentence (same answer), changed numbers, or one extra step.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from optimal_sparsity.data.names import word_pool

ITEMS = ["apples", "pencils", "marbles", "cookies", "stickers", "coins", "books", "cards",
         "shells", "stamps", "buttons", "candles", "ribbons", "beads", "kites", "plums"]
PHRASES = {
    "add": ("{A} buys {n} more {items}.", "{B} gives {A} {n} {items}.",
            "{A} finds {n} {items}."),
    "sub": ("{A} gives {n} {items} to {B}.", "{A} loses {n} {items}.",
            "{A} sells {n} {items}."),
    "mul": ("{A} doubles the number of {items}.", "{A} triples the number of {items}."),
}
SYMBOL = {"add": "+", "sub": "-", "mul": "*"}
_EQ = re.compile(r"(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)")
_FINAL = re.compile(r"#### (-?\d+)")

Composition = tuple[int, tuple[tuple[str, int], ...]]


@dataclass(frozen=True)
class ArithmeticConfig:
    min_steps: int = 2
    max_steps: int = 3
    max_start: int = 20
    max_operand: int = 9
    max_value: int = 99
    ops: tuple[str, ...] = ("add", "sub")
    n_train_problems: int = 0  # 0: a new problem per document; N: a fixed pool repeated
    n_names: int = 60

    def __post_init__(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError("arithmetic: need 1 <= min_steps <= max_steps")
        if not set(self.ops) <= set(PHRASES) or not self.ops:
            raise ValueError(f"arithmetic: ops must be a subset of {sorted(PHRASES)}")
        if self.max_operand < 1 or self.max_start < 1 or self.max_value < self.max_start:
            raise ValueError("arithmetic: need max_operand, max_start >= 1, max_value >= max_start")


@dataclass
class Problem:
    start: int
    ops: list[tuple[str, int]]
    actor: str
    other: str
    items: str
    phrasing: list[int]
    distractor: tuple[int, str] | None = None  # (position, sentence)
    perturbation: str = "none"
    values: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        v = self.start
        self.values = [v]
        for kind, n in self.ops:
            v = v + n if kind == "add" else v - n if kind == "sub" else v * n
            self.values.append(v)

    @property
    def composition(self) -> Composition:
        return self.start, tuple(self.ops)

    @property
    def final(self) -> int:
        return self.values[-1]

    def steps(self) -> list[tuple[int, str, int, int]]:
        return [(self.values[i], SYMBOL[k], n, self.values[i + 1])
                for i, (k, n) in enumerate(self.ops)]

    def question(self) -> str:
        fmt = {"A": self.actor, "B": self.other, "items": self.items}
        sents = [f"{self.actor} has {self.start} {self.items}."]
        sents += [PHRASES[k][p].format(n=n, **fmt)
                  for (k, n), p in zip(self.ops, self.phrasing, strict=True)]
        if self.distractor is not None:
            pos, sent = self.distractor
            sents.insert(pos, sent)
        sents.append(f"How many {self.items} does {self.actor} have now?")
        return " ".join(sents)

    def chain_of_thought(self) -> str:
        eqs = " ".join(f"{a} {s} {b} = {c}." for a, s, b, c in self.steps())
        return f"{eqs} #### {self.final}"

    def prompt(self) -> str:
        return f"Question: {self.question()}\nAnswer:"

    def answer(self) -> str:
        return f" {self.chain_of_thought()}"

    def document(self) -> str:
        return self.prompt() + self.answer()


def parse_final(text: str) -> int | None:
    """The ``#### N`` answer of a completion (GSM8K's strict match), or None."""
    m = _FINAL.search(text)
    return int(m.group(1)) if m else None


def parse_steps(text: str) -> list[tuple[int, str, int, int]]:
    before = text.split("####")[0]
    return [(int(a), s, int(b), int(c)) for a, s, b, c in _EQ.findall(before)]


def step_accuracy(text: str, gold: list) -> float:
    """Fraction of gold steps the completion reproduces, in order (per-step accuracy).
    ``gold``: equations ("12 + 2 = 14", as stored in the eval files) or tuples."""
    gold = [parse_steps(g)[0] if isinstance(g, str) else tuple(g) for g in gold]
    got = parse_steps(text)
    hits = sum(1 for i, g in enumerate(gold) if i < len(got) and tuple(got[i]) == tuple(g))
    return hits / len(gold) if gold else 0.0


class ArithmeticTask:
    def __init__(self, cfg: ArithmeticConfig, seed: int) -> None:
        self.cfg = cfg
        rng = random.Random(f"arithmetic/{seed}")
        self.names = word_pool(cfg.n_names, seed=rng.randrange(2**31), syllables=(2, 2))
        self._seed = seed
        self.excluded: set[Composition] = set()
        self._pool: list[str] | None = None

    # Sampling -----------------------------------------------------------------------
    def _op(self, rng: random.Random, v: int) -> tuple[str, int] | None:
        cfg = self.cfg
        kind = rng.choice(cfg.ops)
        if kind == "add":
            n = rng.randint(1, cfg.max_operand)
            return (kind, n) if v + n <= cfg.max_value else None
        if kind == "sub":
            return (kind, rng.randint(1, min(cfg.max_operand, v))) if v >= 1 else None
        n = rng.choice((2, 3))
        return (kind, n) if v * n <= cfg.max_value else None

    def _ops(self, rng: random.Random, start: int, n_steps: int) -> list[tuple[str, int]]:
        while True:
            v, ops = start, []
            for _ in range(n_steps):
                op = self._op(rng, v)
                if op is None:
                    break
                ops.append(op)
                v = v + op[1] if op[0] == "add" else v - op[1] if op[0] == "sub" else v * op[1]
            if len(ops) == n_steps:
                return ops

    def _surface(self, rng: random.Random, start: int, ops: list[tuple[str, int]]) -> Problem:
        actor, other = rng.sample(self.names, 2)
        phrasing = [rng.randrange(len(PHRASES[k])) if k != "mul" else (0 if n == 2 else 1)
                    for k, n in ops]
        return Problem(start, ops, actor, other, rng.choice(ITEMS), phrasing)

    def sample(self, rng: random.Random, exclude: Iterable[Composition] | None = None
               ) -> Problem:
        exclude = self.excluded if exclude is None else exclude
        while True:
            start = rng.randint(1, self.cfg.max_start)
            ops = self._ops(rng, start, rng.randint(self.cfg.min_steps, self.cfg.max_steps))
            if (start, tuple(ops)) not in exclude:
                return self._surface(rng, start, ops)

    # Held-out evaluation sets -------------------------------------------------------
    def eval_problems(self, n: int) -> list[Problem]:
        """``n`` distinct held-out compositions; they are excluded from training."""
        rng = random.Random(f"arithmetic-eval/{self._seed}")
        out: list[Problem] = []
        seen: set[Composition] = set()
        while len(out) < n:
            p = self.sample(rng, exclude=seen)
            seen.add(p.composition)
            out.append(p)
        self.excluded |= seen
        return out

    def perturb(self, problems: list[Problem], rng: random.Random | None = None
                ) -> list[Problem]:
        """Three GSM-Plus-style variants of each problem; they are excluded from training."""
        rng = rng or random.Random(f"arithmetic-plus/{self._seed}")
        out = []
        for p in problems:
            # 1. distractor: an irrelevant sentence about someone else; same answer
            d = Problem(p.start, list(p.ops), p.actor, p.other, p.items, list(p.phrasing),
                        perturbation="distractor")
            other_items = rng.choice([i for i in ITEMS if i != p.items])
            d.distractor = (rng.randint(1, len(p.ops)),
                            f"{p.other} has {rng.randint(2, self.cfg.max_start)} {other_items}.")
            # 2. changed numbers: the same operations and phrasing, new numbers
            kinds = [k for k, _ in p.ops]
            while True:
                start = rng.randint(1, self.cfg.max_start)
                ops = self._ops(rng, start, len(p.ops))
                if [k for k, _ in ops] == kinds and (start, tuple(ops)) != p.composition:
                    break
            phrasing = [(0 if n == 2 else 1) if k == "mul" else ph
                        for (k, n), ph in zip(ops, p.phrasing, strict=True)]
            c = Problem(start, ops, p.actor, p.other, p.items, phrasing,
                        perturbation="numbers")
            # 3. one extra step
            while (op := self._op(rng, p.final)) is None:
                pass
            kind, n = op
            ph = (0 if n == 2 else 1) if kind == "mul" else rng.randrange(len(PHRASES[kind]))
            e = Problem(p.start, [*p.ops, op], p.actor, p.other, p.items, [*p.phrasing, ph],
                        perturbation="extra_step")
            for v in (d, c, e):
                self.excluded.add(v.composition)
                out.append(v)
        return out

    # Training text --------------------------------------------------------------------
    def train_pool(self) -> list[str] | None:
        """The fixed pool of training problems (``n_train_problems`` > 0), else None."""
        if self.cfg.n_train_problems <= 0:
            return None
        if self._pool is None:
            rng = random.Random(f"arithmetic-pool/{self._seed}")
            self._pool = [self.sample(rng).document() for _ in range(self.cfg.n_train_problems)]
        return self._pool

    def document(self, rng: random.Random) -> str:
        pool = self.train_pool()
        if pool is not None:
            return pool[rng.randrange(len(pool))]
        return self.sample(rng).document()


def item(p: Problem, task: str, idx: int) -> dict:
    return {"id": f"{task}-{idx}", "task": task, "prompt": p.prompt(), "answer": p.answer(),
            "target": str(p.final), "steps": [f"{a} {s} {b} = {c}" for a, s, b, c in p.steps()],
            "n_steps": len(p.ops), "perturbation": p.perturbation,
            "question": p.question()}


def trivial_baselines(items: list[dict]) -> dict[str, float]:
    """Accuracy of answer-free guesses: the most common answer, or a number of the question."""
    n = len(items)
    mode = Counter(it["target"] for it in items).most_common(1)[0][0]

    def nums(it: dict) -> list[str]:
        return re.findall(r"\d+", it["question"])

    return {
        "most_common_answer": sum(it["target"] == mode for it in items) / n,
        "first_number": sum(nums(it)[:1] == [it["target"]] for it in items) / n,
        "last_number": sum(nums(it)[-1:] == [it["target"]] for it in items) / n,
    }
