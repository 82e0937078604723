"""Progress of long steps away from a terminal: a plain line every N seconds with items
done / total, rate and ETA; the trainer adds tokens/s and achieved FLOP/s (the project's
FLOP accounting); the lm-eval adapter honours ``disable_tqdm``; the study shows an ETA."""

from __future__ import annotations

import io
import re

import pytest

from optimal_sparsity.progress import Progress, duration


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_lines_every_interval_with_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    bar = Progress(10, "eval", "items", stream=out, interval=5.0, clock=clock,
                   rates={"tok/s": 1000})
    assert bar.mode == "lines"  # a StringIO is no terminal
    for _ in range(4):
        clock.t += 2.0
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    # at 6 s (3 items) the interval has passed; close() adds the last line (4 items at 8 s)
    assert lines == ["eval: 3/10 items (30%), 0.5 items/s, elapsed 0:06, ETA 0:14, 500 tok/s",
                     "eval: 4/10 items (40%), 0.5 items/s, elapsed 0:08, ETA 0:12, 500 tok/s"]


def test_quick_steps_and_off_mode_stay_silent():
    out = io.StringIO()
    with Progress(3, "quick", stream=out, interval=60.0) as bar:
        bar.update(3)
    with Progress(3, "off", stream=out, interval=0.0, mode="off") as bar:
        bar.update(3)
    assert out.getvalue() == ""
    assert duration(3725) == "1:02:05" and duration(float("nan")) == "?"


def _number(text: str) -> float:
    scale = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    return float(text[:-1]) * scale[text[-1]] if text[-1] in scale else float(text)


def test_trainer_logs_tokens_and_flops_off_a_terminal(tiny_train_config, tmp_path, capsys):
    from optimal_sparsity.accounting import matmul_flops_per_token
    from optimal_sparsity.train.loop import Trainer

    cfg = tiny_train_config.replace(steps=3)
    t = Trainer(cfg, tmp_path / "run", progress=None, log_interval_s=0.0)
    t.run()
    lines = [x for x in capsys.readouterr().err.splitlines() if " train: " in x]
    assert len(lines) == 3, lines
    m = re.search(r"3/3 steps \(100%\), .* ETA 0:00, loss [\d.]+, ([\d.]+[kMG]?) tok/s, "
                  r"([\d.]+[kMGT]?) FLOP/s$", lines[-1])
    assert m, lines[-1]
    tok_s, flop_s = _number(m.group(1)), _number(m.group(2))
    assert tok_s > 0
    # the same window: FLOP/s = tokens/s x the accounting's training FLOPs per token
    assert flop_s / tok_s == pytest.approx(matmul_flops_per_token(t.model_cfg, cfg.seq_len),
                                           rel=0.02)


def test_trainer_progress_false_prints_nothing(tiny_train_config, tmp_path, capsys):
    from optimal_sparsity.train.loop import Trainer

    Trainer(tiny_train_config.replace(steps=2), tmp_path / "run", progress=False,
            log_interval_s=0.0).run()
    assert " train: " not in capsys.readouterr().err


def test_adapter_shows_requests_and_honours_disable_tqdm(tiny_corpus, capsys):
    from lm_eval.api.instance import Instance

    from optimal_sparsity.data.tokenizer import load_tokenizer
    from optimal_sparsity.eval.lm_adapter import MoELM
    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.model import build_model

    tok = load_tokenizer(tiny_corpus / "tokenizer")
    model = build_model(scaled_config(32, 2, 1, n_layers=1, vocab_size=len(tok),
                                      max_seq_len=64), seed=0)
    lm = MoELM(model, tok, batch_size=2, progress_interval=0.0)
    gen = [Instance("generate_until", {}, ("a b c", {"until": ["\n"], "max_gen_toks": 3}), i)
           for i in range(5)]
    ll = [Instance("loglikelihood", {}, ("a b", " c"), i) for i in range(3)]
    lm.generate_until(gen)
    lm.loglikelihood(ll)
    err = capsys.readouterr().err
    assert "generate_until: 2/5 requests (40%)" in err and "5/5 requests (100%)" in err
    assert "loglikelihood: 3/3 requests (100%)" in err and "ETA" in err
    lm.generate_until(gen, disable_tqdm=True)
    lm.loglikelihood(ll, disable_tqdm=True)
    assert "requests" not in capsys.readouterr().err


def test_study_clock_eta_from_what_each_kind_of_work_cost():
    from types import SimpleNamespace

    from optimal_sparsity.study.pipeline import StudyClock

    def run(steps):
        return SimpleNamespace(config=SimpleNamespace(
            total_steps=lambda _w: steps, micro_batch=2, grad_accum=1, seq_len=8))

    lines: list[str] = []
    clock = StudyClock([run(10), run(30)], n_evals=4, log=lines.append)
    assert clock.line().endswith("ETA after the first of each")
    clock.trained(run(10), 20.0)  # 160 tokens in 20 s: 480 tokens left -> 60 s
    assert clock.line().endswith("ETA after the first of each")  # no evaluation timed yet
    clock.evaluated(5.0)  # 3 evaluations left at 5 s each
    assert clock.eta_s() == pytest.approx(60 + 15)
    assert lines[-1].startswith("overall: 1/2 trainings, 1/4 evaluations, elapsed ")
    assert lines[-1].endswith("ETA 1:15")
