import pytest

from optimal_sparsity.config import ModelConfig
from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import get_config, scaled_config


def test_roundtrip(tiny_cfg):
    again = ModelConfig.from_dict(tiny_cfg.to_dict())
    assert again == tiny_cfg
    assert again.fingerprint() == tiny_cfg.fingerprint()
    assert tiny_cfg.replace(top_k=1).fingerprint() != tiny_cfg.fingerprint()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"top_k": 5}, "exceeds the number of experts"),
        ({"top_k": 0}, "top_k must be >= 1"),
        ({"n_heads": 3}, "not divisible by n_heads"),
        ({"d_model": -8}, "d_model must be >= 1"),
        ({"backend": "jax"}, "backend must be one of"),
        ({"init_std": 0.0}, "init_std must be > 0"),
        ({"n_layers": 2.5}, "n_layers must be an integer"),
    ],
)
def test_invalid_configs_are_one_line_errors(tiny_cfg, changes, message):
    with pytest.raises(UserError, match=message) as err:
        tiny_cfg.replace(**changes)
    assert "\n" not in str(err.value)


def test_unknown_field():
    with pytest.raises(UserError, match="unknown model config field"):
        ModelConfig.from_dict({**scaled_config(32, 2, 1).to_dict(), "gqa": 2})


def test_names_resolve():
    assert get_config("d512-E8-k2").n_layers == 16
    full = get_config("llm-jp/optimal-sparsity-math-d1024-E64-k4-6.7B-A670M")
    assert (full.d_model, full.n_experts, full.top_k, full.n_heads) == (1024, 64, 4, 8)
    assert get_config("s-d64-E8-k2").n_heads == 2
    for bad in ("d512-E8-k32", "d4096-E8-k2", "s-d65-E8-k2", "s-d64-E2-k4", "mixtral"):
        with pytest.raises(UserError, match="unknown"):
            get_config(bad)
