"""HellaSwag proxy: memorized activity scripts, evaluated by 4-way multiple choice.

Each activity (a made-up ritual) has a fixed sequence of steps. Training text narrates
the scripts with varying people; evaluation gives the beginning of a script and asks
for the next step among 4 endings: the right one and three steps that other
activities take at the same position. Choosing right needs the memorized script.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from optimal_sparsity.data.names import word_pool

VERBS = ["lights", "folds", "washes", "carries", "paints", "opens", "closes", "buries",
         "polishes", "ties", "lifts", "breaks", "fills", "empties", "cleans", "hides",
         "shakes", "counts", "stirs", "seals", "rings", "plants", "cuts", "wraps"]
CONNECTORS = ("First", "Next", "Then", "Finally")


@dataclass(frozen=True)
class ScriptsConfig:
    n_activities: int = 300
    n_steps: int = 4
    n_objects: int = 60
    n_people: int = 200

    def __post_init__(self) -> None:
        if self.n_steps < 2 or self.n_activities < 4:
            raise ValueError("scripts: need n_steps >= 2 and n_activities >= 4")
        if len(VERBS) * self.n_objects < 4 * self.n_steps:
            raise ValueError("scripts: too few objects for distinct steps")


def connector(pos: int, n_steps: int) -> str:
    if pos == 0:
        return CONNECTORS[0]
    if pos == n_steps - 1:
        return CONNECTORS[3]
    return CONNECTORS[1] if pos == 1 else CONNECTORS[2]


class Scripts:
    def __init__(self, cfg: ScriptsConfig, seed: int) -> None:
        self.cfg = cfg
        rng = random.Random(f"scripts/{seed}")
        self.activities = word_pool(cfg.n_activities, seed=rng.randrange(2**31),
                                    capitalize=False)
        objects = word_pool(cfg.n_objects, seed=rng.randrange(2**31), capitalize=False,
                            exclude=frozenset(self.activities))
        self.people = word_pool(cfg.n_people, seed=rng.randrange(2**31), syllables=(2, 2),
                                exclude=frozenset(w.capitalize() for w in
                                                  self.activities + objects))
        steps = [f"{v} the {o}" for v in VERBS for o in objects]
        self.steps = [rng.sample(steps, cfg.n_steps) for _ in self.activities]

    def _prefix(self, person: str, a: int) -> str:
        return f"{person} prepared for the {self.activities[a]} ritual."

    def document(self, rng: random.Random) -> tuple[str, int]:
        a = rng.randrange(len(self.activities))
        p = rng.choice(self.people)
        n = self.cfg.n_steps
        body = " ".join(f"{connector(j, n)}, {p} {s}." for j, s in enumerate(self.steps[a]))
        return f"{self._prefix(p, a)} {body}", a

    def eval_items(self, n: int, seed: int) -> list[dict]:
        rng = random.Random(f"scripts-eval/{seed}")
        n_steps = self.cfg.n_steps
        keys = [(a, j) for a in range(len(self.activities)) for j in range(1, n_steps)]
        items = []
        for a, j in rng.sample(keys, min(n, len(keys))):
            p = rng.choice(self.people)
            seen = " ".join(f"{connector(i, n_steps)}, {p} {s}."
                            for i, s in enumerate(self.steps[a][:j]))
            context = f"{self._prefix(p, a)} {seen} {connector(j, n_steps)}, {p}"
            gold = self.steps[a][j]
            others = sorted({self.steps[b][j] for b in range(len(self.activities))} - {gold})
            endings = [*rng.sample(others, 3), gold]
            rng.shuffle(endings)
            items.append({"id": f"sc-{a}-{j}", "task": "hellaswag_proxy", "context": context,
                          "endings": [f" {e}." for e in endings],
                          "label": endings.index(gold), "prompt": context,
                          "answer": f" {gold}."})
        return items
