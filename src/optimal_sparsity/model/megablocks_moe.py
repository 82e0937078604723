"""MegaBlocks dMoE as the GPU backend (imported lazily).

Same parameters (``router.layer.weight``, ``experts.mlp.{w1,v1,w2}``) and math as
``TorchMoE``: GLU experts with SiLU, no bias, top-k weights renormalised (L1), dropless
grouped GEMMs. MegaBlocks' own auxiliary-loss bookkeeping is switched off
(``moe_loss_weight=0``, ``moe_zloss_weight=0``); the router logits are captured with a
forward hook so both backends compute the aux losses with the same code
(``optimal_sparsity.model.losses``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from optimal_sparsity.config import ModelConfig
from optimal_sparsity.errors import UserError
from optimal_sparsity.model.moe import RouterOutput, output_init_std


def megablocks_unavailable_reason() -> str | None:
    """Why the MegaBlocks backend cannot run here, or None if it can."""
    if not torch.cuda.is_available():
        return "it needs a CUDA GPU and this machine has none (use backend='torch')"
    try:
        import megablocks.layers.dmoe  # noqa: F401
    except Exception as err:  # ImportError, or a CUDA extension that fails to load
        return (f"it could not be imported ({type(err).__name__}: {err}); install "
                "megablocks==0.10.0 with grouped_gemm in the GPU image (see Dockerfile)")
    return None


def build_megablocks_moe(cfg: ModelConfig, device: torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> nn.Module:
    """A MegaBlocks dMoE whose submodules carry the same names as ``TorchMoE``'s.

    Its ``forward`` returns ``(out, RouterOutput)`` like ``TorchMoE``.
    """
    reason = megablocks_unavailable_reason()
    if reason is not None:
        raise UserError(f"the megablocks backend cannot run: {reason}")
    from megablocks.layers.arguments import Arguments
    from megablocks.layers.dmoe import dMoE

    class MegaBlocksMoE(dMoE):
        def __init__(self, args: Arguments, top_k: int) -> None:
            super().__init__(args)
            self.top_k = top_k
            self._logits: torch.Tensor | None = None
            self.router.layer.register_forward_hook(self._keep_logits)

        def _keep_logits(self, _mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            self._logits = out

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, RouterOutput]:
            # dMoE takes (seq, batch, hidden); our activations are (batch, seq, hidden).
            out = super().forward(x.transpose(0, 1).contiguous()).transpose(0, 1)
            logits, self._logits = self._logits, None
            idx = torch.topk(logits.float(), self.top_k, dim=-1).indices
            return out.contiguous(), RouterOutput(logits=logits, top_idx=idx)

    device = device or torch.device("cuda", torch.cuda.current_device())
    args = Arguments(
        hidden_size=cfg.d_model,
        ffn_hidden_size=cfg.ffn_hidden,
        num_layers=cfg.n_layers,
        bias=False,
        return_bias=False,
        activation_fn=F.silu,
        moe_num_experts=cfg.n_experts,
        moe_top_k=cfg.top_k,
        moe_normalize_expert_weights=1,
        moe_loss_weight=0.0,
        moe_zloss_weight=0.0,
        mlp_type="glu",
        mlp_impl="grouped",
        fp16=False,
        bf16=dtype == torch.bfloat16,
        device=device,
        init_method=functools.partial(nn.init.normal_, mean=0.0, std=cfg.init_std),
        output_layer_init_method=functools.partial(
            nn.init.normal_, mean=0.0, std=output_init_std(cfg)),
    )
    return MegaBlocksMoE(args, cfg.top_k)
