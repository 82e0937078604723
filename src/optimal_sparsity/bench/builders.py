"""Turn a case into peers: callables timed side by side, with identical weights.

``build(case, only=...)`` returns a ``Built``: the peers, the matmul FLOPs and tokens
of one call, and the result of the equivalence check run before any timing (ours
against Hugging Face's Mixtral on the same weights and input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from optimal_sparsity.bench.cases import (
    Case,
    EvalLossCase,
    GenerateCase,
    MatmulCase,
    MoELayerCase,
    TrainStepCase,
)
from optimal_sparsity.config import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PEAK_SIZE = 2048  # the reference matmul: [2048, 2048] @ [2048, 2048]


@dataclass
class Built:
    peers: dict[str, Callable[[], object]]
    flops: float  # matmul FLOPs of one call (2 per multiply-add), the same for every peer
    tokens: int  # tokens of one call (0 for a bare matmul)
    peak_dtype: dict[str, str] = field(default_factory=dict)  # peer -> dtype of its peak
    check: str = ""  # what the equivalence check found


def matmul_peer(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device
                ) -> Callable[[], object]:
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=g).to(device, dtype)
    b = torch.randn(k, n, generator=g).to(device, dtype)
    return lambda: torch.mm(a, b)


def peak_peers(device: torch.device, dtypes: tuple[str, ...] = ("float32",),
               size: int = PEAK_SIZE) -> dict[str, Callable[[], object]]:
    """The reference matmul, one peer per dtype: timed in every row as its peak."""
    return {f"peak-{dt}": matmul_peer(size, size, size, DTYPES[dt], device) for dt in dtypes}


# Matmul --------------------------------------------------------------------------------
def build_matmul(case: MatmulCase, device: torch.device, only: str | None = None) -> Built:
    peers = {"mm": matmul_peer(case.m, case.k, case.n, DTYPES[case.dtype], device)}
    return Built(peers, 2.0 * case.m * case.k * case.n, 0, {"mm": case.dtype})


# MoE layer ---------------------------------------------------------------------------
MOE_PEERS = ("ours", "hf-eager", "hf-grouped_mm")


def moe_layer_flops(d: int, ffn: int, n_experts: int, top_k: int, tokens: int) -> float:
    """Forward + backward matmul FLOPs: router and k experts' three projections, x3."""
    fwd = 2.0 * tokens * (n_experts * d + top_k * 3 * d * ffn)
    return 3.0 * fwd


def hf_moe_block(cfg: ModelConfig, impl: str) -> nn.Module:
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    hf_cfg = MixtralConfig(hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden,
                           num_local_experts=cfg.n_experts, num_experts_per_tok=cfg.top_k,
                           router_jitter_noise=0.0, experts_implementation=impl)
    return MixtralSparseMoeBlock(hf_cfg)


@torch.no_grad()
def copy_moe_to_hf(ours: nn.Module, hf: nn.Module, cfg: ModelConfig) -> None:
    """Our MegaBlocks-layout weights into HF's fused layout (same math)."""
    e, f, h = cfg.n_experts, cfg.ffn_hidden, cfg.d_model
    mlp = ours.experts.mlp
    hf.gate.weight.copy_(ours.router.layer.weight)
    hf.experts.gate_up_proj.copy_(torch.cat([mlp.w1.view(e, f, h), mlp.v1.view(e, f, h)], 1))
    hf.experts.down_proj.copy_(mlp.w2.view(e, f, h).transpose(1, 2))


def _fwd_bwd(module: nn.Module, x: torch.Tensor, grad: torch.Tensor
             ) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        xi = x.detach().requires_grad_()
        y = module(xi)
        y = y[0] if isinstance(y, tuple) else y
        y.backward(grad)
        module.zero_grad(set_to_none=True)
        return xi.grad

    return call


def build_moe_layer(case: MoELayerCase, device: torch.device, only: str | None = None
                    ) -> Built:
    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.model.moe import TorchMoE, init_moe_

    dtype = DTYPES[case.dtype]
    cfg = scaled_config(case.d, case.n_experts, case.top_k, n_layers=1)
    torch.manual_seed(0)
    ours = TorchMoE(cfg)
    init_moe_(ours, cfg)
    ours.to(device, dtype)
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(1, case.tokens, case.d, generator=g).to(device, dtype)
    grad = torch.randn(1, case.tokens, case.d, generator=g).to(device, dtype)
    modules: dict[str, nn.Module] = {}
    for name in MOE_PEERS:
        if only not in (None, name):
            continue
        if name == "ours":
            modules[name] = ours
        else:
            hf = hf_moe_block(cfg, name.removeprefix("hf-")).to(device, dtype)
            copy_moe_to_hf(ours, hf, cfg)
            modules[name] = hf
    if device.type == "cuda" and only in (None, "megablocks"):
        from optimal_sparsity.model.megablocks_moe import (
            build_megablocks_moe,
            megablocks_unavailable_reason,
        )

        if megablocks_unavailable_reason() is None:
            mb = build_megablocks_moe(cfg, device=device, dtype=dtype)
            mb.load_state_dict(ours.state_dict(), strict=True)
            modules["megablocks"] = mb
    peers = {n: _fwd_bwd(m, x, grad) for n, m in modules.items()}
    check = ""
    if only is None:
        check = _check_same(peers, "ours", case.dtype, "input-grad")
    flops = moe_layer_flops(case.d, case.ffn, case.n_experts, case.top_k, case.tokens)
    return Built(peers, flops, case.tokens, {n: case.dtype for n in peers}, check)


def _check_same(peers: dict[str, Callable[[], torch.Tensor]], ref: str, dtype: str,
                what: str) -> str:
    """The peers' outputs (``what``: input gradients of a forward + backward, which depend
    on every output and weight, or log-probabilities) must agree with ours before anything
    is timed."""
    tol = 1e-4 if dtype == "float32" else 5e-2
    want = peers[ref]().float()
    scale = want.abs().max().item()
    worst = 0.0
    for name, peer in peers.items():
        if name == ref:
            continue
        err = (peer().float() - want).abs().max().item() / max(scale, 1e-30)
        if not err <= tol:
            raise AssertionError(f"{name} disagrees with {ref}: max relative error {err:.2e}")
        worst = max(worst, err)
    return f"{what} max rel. error vs ours {worst:.1e}"


# Training step -----------------------------------------------------------------------
# ours: as the trainer runs today (fp32, for-loop AdamW); +fused: torch's fused CPU AdamW
# (deterministic; not bitwise equal to the for-loop, ~1 ulp apart); -bf16: autocast.
TRAIN_PEERS = ("ours", "ours+fused", "ours-bf16+fused", "hf-eager", "hf-grouped_mm")


def train_config(case: TrainStepCase | EvalLossCase | GenerateCase) -> ModelConfig:
    from optimal_sparsity.grid import get_config

    over: dict[str, int] = {"max_seq_len": case.seq_len}
    if case.n_layers is not None:
        over["n_layers"] = case.n_layers
    if case.vocab_size is not None:
        over["vocab_size"] = case.vocab_size
    return get_config(case.model, **over)


def _adamw(model: nn.Module, fused: bool) -> torch.optim.Optimizer:
    """The trainer's AdamW (``train.loop.build_optimizer``) at a benchmark's learning rate."""
    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.train.config import TrainConfig
    from optimal_sparsity.train.loop import build_optimizer

    cfg = TrainConfig(model=scaled_config(32, 2, 2), corpus="", steps=1, lr=1e-4, seq_len=32)
    return build_optimizer(model, cfg, fused=fused)  # only the optimizer's fields are read


def _hf_model(cfg: ModelConfig, impl: str, device: torch.device) -> nn.Module:
    from transformers import MixtralConfig, MixtralForCausalLM

    from optimal_sparsity.hf_export import hf_config

    kw = {k: v for k, v in hf_config(cfg).items()
          if k not in ("architectures", "model_type", "torch_dtype")}
    kw["output_router_logits"] = True  # CE + the router's aux loss, like ours
    torch.manual_seed(0)
    return MixtralForCausalLM(MixtralConfig(**kw, experts_implementation=impl,
                                            attn_implementation="sdpa")).to(device)


def _train_step(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor],
                bf16: bool = False, fused: bool = False) -> Callable[[], torch.Tensor]:
    """Forward, backward, clip at 1.0 (as the trainer does), AdamW step, zero_grad."""
    opt = _adamw(model, fused)
    device_type = next(model.parameters()).device.type

    def call() -> torch.Tensor:
        with torch.autocast(device_type, torch.bfloat16, enabled=bf16):
            loss = loss_fn(model)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return call


def build_train_step(case: TrainStepCase, device: torch.device, only: str | None = None
                     ) -> Built:
    from optimal_sparsity.accounting import matmul_flops_per_token
    from optimal_sparsity.model import build_model

    cfg = train_config(case)
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (case.micro_batch, case.seq_len), generator=g)
    labels = torch.roll(ids, -1, 1)
    ids, labels = ids.to(device), labels.to(device)
    peers: dict[str, Callable[[], object]] = {}
    peak: dict[str, str] = {}
    for name in TRAIN_PEERS:
        if only not in (None, name):
            continue
        if name.startswith("ours"):
            bf16 = "bf16" in name
            model = build_model(cfg, seed=0, device=device)
            if case.block_bytes is not None:
                for layer in model.layers:
                    layer.moe.block_bytes = case.block_bytes
            peers[name] = _train_step(model, lambda m: m(ids, labels=labels,
                                                         return_logits=False).loss,
                                      bf16, fused=name.endswith("+fused"))
            peak[name] = "bfloat16" if bf16 else "float32"
        else:
            model = _hf_model(cfg, name.removeprefix("hf-"), device)
            # HF shifts the labels itself: it gets the inputs as labels.
            peers[name] = _train_step(model, lambda m: m(input_ids=ids, labels=ids).loss)
            peak[name] = "float32"
    tokens = case.micro_batch * case.seq_len
    flops = matmul_flops_per_token(cfg, case.seq_len) * tokens
    return Built(peers, flops, tokens, peak)


# Evaluation --------------------------------------------------------------------------
# ours: our model as the evaluation runs it (the lm-eval adapter ``MoELM``: full
# log-softmax; greedy generation through the model's KV cache); ours-nocache: the same
# adapter re-running the forward pass over the growing rows; hf-*: the exported
# MixtralForCausalLM with each expert implementation; hf-generate: HF ``generate`` with
# its KV cache (the sampling backend), and without it.
EVAL_PEERS = ("ours", "hf-eager", "hf-grouped_mm")
GEN_PEERS = ("ours", "ours-nocache", "hf-generate", "hf-generate-nocache")


def _hf_copy(model: nn.Module, cfg: ModelConfig, impl: str, device: torch.device
             ) -> nn.Module:
    """Our model exported (``hf_export``) and loaded as ``MixtralForCausalLM``."""
    import tempfile
    from pathlib import Path

    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from optimal_sparsity.hf_export import write_hf_files

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        write_hf_files(model.state_dict(), cfg, Path(tmp))
        hf = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32,
                                                  experts_implementation=impl,
                                                  attn_implementation="sdpa")
    return hf.to(device).eval()


class _NoStopTokenizer:
    """The few tokenizer members ``MoELM`` reads: ids decode to their decimal text, and
    the EOS id is outside the vocabulary, so greedy generation runs to ``max_gen`` tokens."""

    def __init__(self, vocab_size: int) -> None:
        self.bos_token_id = None
        self.eos_token_id = vocab_size

    def decode(self, ids, **kwargs) -> str:
        return " ".join(map(str, [ids] if isinstance(ids, int) else ids))


def _our_lm(cfg: ModelConfig, device: torch.device, batch: int):
    from optimal_sparsity.eval.lm_adapter import MoELM
    from optimal_sparsity.model import build_model

    model = build_model(cfg, seed=0, device=device)
    with torch.no_grad():  # off the init, so that logits (and argmaxes) are not near-ties
        g = torch.Generator(device="cpu").manual_seed(2)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g).to(device))
    return MoELM(model.eval(), _NoStopTokenizer(cfg.vocab_size), batch_size=batch,
                 max_length=cfg.max_seq_len, device=device)


def generation_flops(cfg: ModelConfig, batch: int, prompt_len: int, new_tokens: int
                     ) -> float:
    """The work of KV-cached greedy decoding: the prompt once (each position attending to
    the positions before it), then one forward per new token over the cache. Peers
    without a cache do more work than this; their FLOP/s counts only this useful part."""
    from optimal_sparsity.accounting import forward_flops_per_token as fwd

    prefill = sum(fwd(cfg, c) for c in range(1, prompt_len + 1))
    decode = sum(fwd(cfg, prompt_len + j) for j in range(1, new_tokens))
    return batch * (prefill + decode)


def build_eval_loss(case: EvalLossCase, device: torch.device, only: str | None = None
                    ) -> Built:
    from optimal_sparsity.accounting import matmul_flops_per_token

    cfg = train_config(case)
    lm = _our_lm(cfg, device, case.batch)
    g = torch.Generator(device="cpu").manual_seed(0)
    rows = torch.randint(0, cfg.vocab_size, (case.batch, case.seq_len), generator=g).tolist()
    ids = torch.tensor(rows, device=device)
    peers: dict[str, Callable[[], object]] = {}
    for name in EVAL_PEERS:
        if only not in (None, name):
            continue
        if name == "ours":
            peers[name] = lambda: lm._logits(rows)
        else:
            hf = _hf_copy(lm.model, cfg, name.removeprefix("hf-"), device)
            peers[name] = torch.no_grad()(
                lambda hf=hf: torch.log_softmax(hf(input_ids=ids).logits.float(), -1))
    check = _check_same(peers, "ours", "float32", "log-prob") if only is None else ""
    tokens = case.batch * case.seq_len
    flops = matmul_flops_per_token(cfg, case.seq_len, training=False) * tokens
    return Built(peers, flops, tokens, {n: "float32" for n in peers}, check)


def build_generate(case: GenerateCase, device: torch.device, only: str | None = None
                   ) -> Built:
    cfg = train_config(case)
    lm = _our_lm(cfg, device, case.batch)
    g = torch.Generator(device="cpu").manual_seed(0)
    prompts = torch.randint(0, cfg.vocab_size, (case.batch, case.prompt_len), generator=g)
    rows = prompts.tolist()
    ids = prompts.to(device)
    n = case.new_tokens
    peers: dict[str, Callable[[], object]] = {}
    outputs: dict[str, Callable[[], list[list[int]]]] = {}
    for name in GEN_PEERS:
        if only not in (None, name):
            continue
        if name == "ours":
            def ours() -> list[list[int]]:
                return [[int(t) for t in text.split()] for text in lm._greedy(rows, n, [])]

            outputs[name] = ours
        elif name == "ours-nocache":
            def recompute() -> list[list[int]]:
                return [[int(t) for t in lm.tok_decode(new).split()]
                        for new in lm._greedy_recompute(rows, n, [])]

            outputs[name] = recompute
        else:
            hf = _hf_copy(lm.model, cfg, "grouped_mm", device)
            cache = name == "hf-generate"

            @torch.no_grad()
            def gen(hf=hf, cache=cache) -> list[list[int]]:
                out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                  do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                  eos_token_id=None, pad_token_id=0, use_cache=cache)
                return out[:, case.prompt_len:].tolist()

            outputs[name] = gen
        peers[name] = outputs[name]
    check = ""
    if only is None:
        want = outputs["ours"]()
        agree = {k: sum(a == b for a, b in zip(f(), want, strict=True)) for k, f
                 in outputs.items() if k != "ours"}
        check = "greedy sequences equal to ours: " + ", ".join(
            f"{k} {v}/{len(want)}" for k, v in agree.items())
    flops = generation_flops(cfg, case.batch, case.prompt_len, n)
    return Built(peers, flops, case.batch * n, {k: "float32" for k in peers}, check)


BUILDERS = {"matmul": build_matmul, "moe_layer": build_moe_layer,
            "train_step": build_train_step, "eval_loss": build_eval_loss,
            "generate": build_generate}


def build(case: Case, device: torch.device | str = "cpu", only: str | None = None) -> Built:
    return BUILDERS[case.kind](case, torch.device(device), only)
