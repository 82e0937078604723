"""Parameter accounting against the sizes written in the 65 released models' names."""

import pytest

from optimal_sparsity.accounting import count_params, formula_params, matmul_flops_per_token
from optimal_sparsity.grid import PAPER_TOKENS, format_size, paper_models, scaled_ladder


def test_grid_has_65_models():
    models = paper_models()
    assert len(models) == 65
    assert len({m.name for m in models}) == 65


@pytest.mark.parametrize("pm", paper_models(), ids=lambda m: m.name)
def test_counts_from_the_built_model_round_to_the_name(pm):
    pc = count_params(pm.config())  # real nn.Parameters on the meta device
    assert format_size(pc.total) == pm.total_name
    assert format_size(pc.active) == pm.active_name
    assert (pc.total, pc.active) == formula_params(pm.config())


def test_split_and_tpp():
    pc = count_params(paper_models()[0].config())  # d512-E8-k2
    d, v = 512, 99_584
    assert pc.embedding == 2 * v * d
    assert pc.expert == 16 * 8 * 3 * d * 2 * d
    assert pc.router == 16 * 8 * d
    assert pc.active_non_embedding == pc.active - pc.embedding
    assert PAPER_TOKENS / pc.total == pytest.approx(390.43, abs=0.01)


def test_format_size():
    assert format_size(320_160_256) == "320M"
    assert format_size(169_116_160) == "170M"
    assert format_size(1_729_905_152) == "1.7B"
    assert format_size(26_045_088_768) == "26.0B"


def test_dense_equivalent_has_equal_total_and_active():
    cfg = next(m for m in paper_models() if m.k == m.E).config()
    pc = count_params(cfg)
    assert pc.total == pc.active


def test_scaled_ladder_spans_thousands_to_millions():
    sizes = [count_params(c).total for c in scaled_ladder()]
    assert min(sizes) < 100_000 and max(sizes) > 1_000_000
    for cfg in scaled_ladder():
        assert cfg.ffn_hidden == 2 * cfg.d_model and cfg.top_k <= cfg.n_experts


def test_flops_count_k_experts():
    cfg = paper_models()[0].config()
    dense_part = matmul_flops_per_token(cfg.replace(top_k=1), 4096)
    # one more active expert per layer adds 3 matrices of d x F; fwd+bwd = 6 FLOPs per weight
    assert matmul_flops_per_token(cfg, 4096) - dense_part == 16 * 6 * 3 * 512 * 1024
