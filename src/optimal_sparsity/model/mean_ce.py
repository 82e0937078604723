"""The token-weighted mean cross-entropy of a model over fixed batches: the trainer's
validation loss and the evaluation's pre-training loss are this one function."""

from __future__ import annotations

from collections.abc import Sequence

import torch

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]  # (inputs, next-token labels)


@torch.no_grad()
def mean_ce(model: torch.nn.Module, batches: Batches, device: str | torch.device = "cpu",
            progress: str | None = None) -> float:
    """Mean CE (nats) over every label of ``batches``, in eval mode (the model's mode is
    restored after). ``progress``: the label of a progress bar over sequences, or None."""
    from optimal_sparsity.progress import Progress

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    bar = Progress(sum(len(x) for x, _ in batches), progress, "sequences") if progress else None
    for x, y in batches:
        out = model(x.to(device), labels=y.to(device), return_logits=False)
        n = y.numel()
        total += out.ce_loss.item() * n
        count += n
        if bar is not None:
            bar.update(len(x))
    if bar is not None:
        bar.close()
    model.train(was_training)
    return total / count
