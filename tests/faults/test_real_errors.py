"""Real errors, not simulated ones, as one line that names the file: a write that the
kernel refuses inside safetensors, checkpoint files whose manifest matches but which do not
parse (resume falls back), bad numbers and devices, paths and text that are not UTF-8, an HF
directory without a tokenizer, a diverging learning rate, a micro-batch that cannot fit."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal

import pytest
import torch

from optimal_sparsity.checkpoint import verify_checkpoint, write_manifest
from optimal_sparsity.cli import main
from optimal_sparsity.train.loop import Trainer
from optimal_sparsity.train.state import list_checkpoints

from .conftest import snapshot


def one_line(capsys, prefix="error: "):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(prefix) and "Traceback" not in "\n".join(err), err
    return err[-1]


@contextlib.contextmanager
def file_size_limit(nbytes):
    """The kernel refuses writes past ``nbytes`` (EFBIG), as a full disk refuses them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def test_refused_write_inside_safetensors_names_the_file(tiny_run, tiny_corpus, tmp_path,
                                                         capsys):
    ckpt = list_checkpoints(tiny_run / "checkpoints")[-1][1]
    with file_size_limit(20_000):
        code = main(["export", str(ckpt), str(tmp_path / "hf")])
    assert code == 1
    msg = one_line(capsys)
    assert str(tmp_path / "hf") in msg and "model.safetensors" in msg and "too large" in msg
    assert not list(tmp_path.iterdir())  # neither the export nor a temporary
    with file_size_limit(20_000):
        code = main(["train", "--config", "s-d32-E2-k1", "--corpus", str(tiny_corpus),
                     "--out", str(tmp_path / "run"), "--steps", "2", "--seq-len", "64",
                     "--micro-batch", "2", "--threads", "1"])
    assert code == 1
    msg = one_line(capsys)
    assert "checkpoints/step-" in msg and "model.safetensors" in msg and "Errno" not in msg
    assert not list((tmp_path / "run" / "checkpoints").iterdir())


@pytest.fixture(scope="module")
def two_checkpoints(tiny_train_config, tmp_path_factory):
    cfg = tiny_train_config.replace(steps=4, ckpt_interval=2, keep_fractions=(0.5,))
    out = tmp_path_factory.mktemp("two") / "run"
    Trainer(cfg, out, progress=False).run()
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [2, 4]
    return cfg, out


@pytest.mark.parametrize("damage", ["truncated", "pickled", "bad-json"])
def test_manifest_matching_but_unparseable_checkpoint(two_checkpoints, tiny_corpus, tmp_path,
                                                      capsys, damage):
    cfg, src = two_checkpoints
    run = tmp_path / "run"
    shutil.copytree(src, run)
    newest = run / "checkpoints" / "step-0000004"
    weights = newest / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "pickled":
        weights.unlink()
        torch.save({"x": torch.zeros(2)}, weights)
    else:
        (newest / "train_state.json").write_text("{not json")
    write_manifest(newest)  # the manifest now matches the broken files
    res = tmp_path / "results"
    for argv in (["eval", str(newest), "--tiers", "pretrain", "--corpus", str(tiny_corpus),
                  "--results", str(res)], ["export", str(newest), str(tmp_path / "hf")]):
        assert main(argv) == 2
        msg = one_line(capsys)
        assert "does not parse" in msg and str(newest) in msg, msg
    assert not (tmp_path / "hf").exists() and not res.exists()
    # resume skips it, starts from step 2 and replaces it with a good step 4
    result = Trainer(cfg.replace(corpus=str(tiny_corpus)), run, progress=False).run()
    assert result.status == "finished" and result.step == 4
    assert "skipping checkpoint" in capsys.readouterr().err
    verify_checkpoint(newest)


def tokens_argv(corpus, out, *extra):
    return ["train", "--config", "s-d32-E2-k1", "--corpus", str(corpus), "--out", str(out),
            "--seq-len", "64", "--threads", "1", *extra]


@pytest.mark.parametrize("extra", [
    ["--tokens", "nan"], ["--tokens", "inf"], ["--tokens", "-5"], ["--seed", "-1"],
    ["--seed", "99999999999999999999999"], ["--threads", "99999"], ["--lr", "inf"],
    ["--lr", "nan"], ["--steps", "2", "--eval-interval", "-1"]])
def test_bad_training_numbers(tiny_corpus, tmp_path, capsys, extra):
    with pytest.raises(SystemExit) as exit_:
        main(tokens_argv(tiny_corpus, tmp_path / "run", *extra))
    assert exit_.value.code == 2
    one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_absurd_micro_batch_is_refused_by_a_memory_estimate(tiny_corpus, tmp_path, capsys):
    assert main(tokens_argv(tiny_corpus, tmp_path / "run", "--steps", "1",
                            "--micro-batch", "100000000")) == 2
    msg = one_line(capsys)
    assert "GiB" in msg and "--micro-batch" in msg
    assert not (tmp_path / "run").exists()


def test_diverging_learning_rate_stops_with_an_error(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tokens_argv(tiny_corpus, run, "--steps", "4", "--micro-batch", "2",
                            "--lr", "1e30")) == 2
    msg = one_line(capsys)
    assert "the loss is nan" in msg or "the loss is inf" in msg
    assert not (run / "summary.json").exists()


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "nonsense", "tpu"])
def test_eval_devices(tiny_run, tmp_path, capsys, device):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that CUDA device")
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(tiny_run), "--device", device, "--results", str(tmp_path)])
    assert exit_.value.code == 2
    assert device in one_line(capsys)
    assert not list(tmp_path.iterdir())


def test_paths_that_are_not_utf8(tiny_run, tiny_corpus, tmp_path, capsys):
    odd = tmp_path / os.fsdecode(b"caf\xe9")  # Latin-1 bytes in a path name
    shutil.copytree(tiny_run, odd / "run")
    before = snapshot(tmp_path)
    for argv in (["eval", odd / "run", "--tiers", "pretrain", "--corpus", tiny_corpus,
                  "--results", tmp_path / "results"],
                 ["data", "--preset", "tiny", "--out", odd / "corpus"],
                 ["export", odd / "run", tmp_path / "hf"],
                 ["train", "--config", "s-d32-E2-k1", "--corpus", tiny_corpus, "--out", odd]):
        assert main([str(a) for a in argv]) == 2
        msg = one_line(capsys)
        assert "not UTF-8" in msg and "caf\\xe9" in msg, msg
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name,content,needle", [
    ("latin1.txt", "caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("numbers.jsonl", b'{"text": 42}\n', "not a string"),
    ("nulls.jsonl", b'{"text": null}\n', "not a string")])
def test_tokenize_inputs_that_are_not_text(tiny_corpus, tmp_path, capsys, name, content,
                                           needle):
    src = tmp_path / name
    src.write_bytes(content)
    before = snapshot(tmp_path)
    assert main(["tokenize", str(src), "--tokenizer", str(tiny_corpus / "tokenizer"),
                 "--out", str(tmp_path / "out")]) == 2
    msg = one_line(capsys)
    assert needle in msg and str(src) in msg
    assert snapshot(tmp_path) == before


def test_hf_directory_without_tokenizer(tiny_run, tmp_path, capsys):
    ckpt = list_checkpoints(tiny_run / "checkpoints")[-1][1]
    hf = tmp_path / "hf"
    assert main(["export", str(ckpt), str(hf)]) == 0
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (hf / name).unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["eval", str(hf), "--results", str(tmp_path / "res")]) == 2
    msg = one_line(capsys)
    assert "no tokenizer" in msg and str(hf) in msg
    assert not (tmp_path / "res").exists()
