"""Bad configurations and arguments (property-based): every failure is a one-line
UserError or a one-line CLI error, never a traceback."""

import contextlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimal_sparsity.cli import main
from optimal_sparsity.config import ModelConfig
from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import get_config, scaled_config
from optimal_sparsity.train.config import TrainConfig

ints = st.one_of(st.integers(-5, 70), st.floats(allow_nan=True), st.booleans(), st.none())


@settings(max_examples=300, deadline=None)
@given(d=ints, layers=ints, heads=ints, e=ints, k=ints, ffn=ints, vocab=ints)
def test_model_config_valid_or_user_error(d, layers, heads, e, k, ffn, vocab):
    try:
        cfg = ModelConfig(name="x", d_model=d, n_layers=layers, n_heads=heads, n_experts=e,
                          top_k=k, ffn_hidden=ffn, vocab_size=vocab, max_seq_len=16)
    except UserError as err:
        assert "\n" not in str(err)
        return
    assert 1 <= cfg.top_k <= cfg.n_experts and cfg.d_model % cfg.n_heads == 0


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=30))
def test_model_names(name):
    try:
        get_config(name)
    except UserError as err:
        assert "\n" not in str(err)


@settings(max_examples=200, deadline=None)
@given(steps=ints, tokens=ints, lr=st.one_of(st.floats(-1, 1), st.just(float("nan"))), mb=ints)
def test_train_config(steps, tokens, lr, mb):
    try:
        TrainConfig(model=scaled_config(32, 2, 2), corpus="/x", steps=steps,
                    train_tokens=tokens, lr=lr, micro_batch=mb)
    except (UserError, TypeError) as err:
        assert "\n" not in str(err)


ARGS = st.lists(st.sampled_from(
    ["grid", "plan", "train", "fig5", "fig99", "all", "pull", "lock", "--mode", "pull",
     "retrain", "bogus", "--scale", "smoke", "huge", "--tokens", "-1", "1e12", "nan",
     "--active-params", "0", "--goal", "reasoning", "memorization", "--config",
     "d512-E8-k32", "s-d64-E8-k2", "--steps", "0", "--dry-run", "--launcher", "pbs",
     "--allow-unpinned", "--csv"]), min_size=1, max_size=6)
SAFE_COMMANDS = {"fig5", "all", "pull", "lock", "train"}  # would start real work if valid


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=ARGS)
def test_cli_failures_are_one_line(argv):
    if argv[0] in SAFE_COMMANDS or (argv[0].startswith("--") and "bogus" not in argv):
        argv = [*argv, "--mode", "bogus"]  # keep it to argument parsing: never real work
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    text = err.getvalue()
    if code not in (0, None):
        assert "Traceback" not in text
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error"), (argv, text)
