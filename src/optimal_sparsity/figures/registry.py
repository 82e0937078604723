"""The paper's figures (camera-ready numbering), as data. ``docs/paper_figures.csv``
lists axes and series; each spec here names the same panels. The claims a figure carries
are those whose ``Claim.figure`` names it (``claims.registry``)."""

from __future__ import annotations

from optimal_sparsity.errors import UserError
from optimal_sparsity.figures.spec import FigureSpec, Panel

# knowledge_bits: bits stored per total parameter beside every point (values-style corpora)
BASE = ("pretrain", "task_loss", "accuracy", "knowledge_bits")

FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "fig1", "Pre-training and task loss vs total parameters",
        "train/val loss fall with total (and active) params; HellaSwag task loss follows; "
        "GSM8K task loss worsens past a threshold. One line per (d, k).",
        (Panel("train loss", "pretrain/train_loss", y_label="loss (nats)"),
         Panel("validation loss", "pretrain/val_loss", y_label="loss (nats)"),
         Panel("HellaSwag task loss", "memorization_loss[1]", y_label="bits/token"),
         Panel("GSM8K task loss", "reasoning_loss[0]", y_label="bits/token")),
        BASE),
    FigureSpec(
        "fig2", "Task loss vs pre-training loss",
        "memorization task loss monotone in train loss; reasoning U-shaped, turning point "
        "lower for more active params. Series: (d, k) families, E varied.",
        tuple(Panel(t, f"{role}[{i}]", x="train_loss", log_x=False,
                    y_label="task loss (bits/token)")
              for t, role, i in (("TriviaQA", "memorization_loss", 0),
                                 ("HellaSwag", "memorization_loss", 1),
                                 ("GSM8K", "reasoning_loss", 0),
                                 ("GSM-Plus", "reasoning_loss", 1))),
        BASE),
    FigureSpec(
        "fig3", "Accuracy vs pre-training loss",
        "TriviaQA/HellaSwag accuracy improves steadily as loss falls; GSM8K is non-monotone.",
        tuple(Panel(t, f"{role}[{i}]", x="train_loss", log_x=False, y_label="accuracy")
              for t, role, i in (("TriviaQA", "memorization_acc", 0),
                                 ("HellaSwag", "memorization_acc", 1),
                                 ("GSM8K", "reasoning_acc", 0),
                                 ("GSM-Plus", "reasoning_acc", 1))),
        BASE),
    FigureSpec(
        "fig4", "Error rate vs pre-training loss, coloured by sparsity (checkpoints included)",
        "memorization error collapses onto one curve of train loss; reasoning error at equal "
        "loss depends on sparsity (denser better).",
        tuple(Panel(t, f"{role}[{i}]", x="train_loss", kind="sparsity_scatter", log_x=False,
                    y_label="error rate")
              for t, role, i in (("TriviaQA", "memorization_acc", 0),
                                 ("HellaSwag", "memorization_acc", 1),
                                 ("GSM8K", "reasoning_acc", 0),
                                 ("GSM-Plus", "reasoning_acc", 1))),
        BASE, checkpoints="all"),
    FigureSpec(
        "fig5", "Task loss and accuracy vs density at fixed active parameters",
        "memorization always prefers sparser; reasoning prefers sparser at small active "
        "budgets, dense again at large ones. Black circle: optimum.",
        tuple(Panel(f"{t} {'task loss' if 'loss' in role else 'accuracy'}", f"{role}[{i}]",
                    x="density", y_label="bits/token" if "loss" in role else "accuracy")
              for role in ("memorization_loss", "reasoning_loss", "memorization_acc",
                           "reasoning_acc")
              for t, i in ((("TriviaQA", 0), ("HellaSwag", 1)) if role.startswith("memo")
                           else (("GSM8K", 0), ("GSM-Plus", 1)))),
        BASE),
    FigureSpec(
        "fig6", "Test-time compute and GRPO",
        "left: self-consistency accuracy vs samples; right: GRPO before/after vs total "
        "params. Both raise accuracy; the non-monotone trend persists.",
        (Panel("self-consistency (maj@N)", "sc", x="samples", kind="sc_curve",
               y_label="accuracy"),
         Panel("GRPO", "grpo", x="total_params", kind="grpo", y_label="accuracy")),
        (*BASE, "sc", "grpo"), points="posttrain"),
    FigureSpec(
        "fig7", "Accuracy vs tokens per parameter",
        "memorization improves as TPP falls; reasoning peaks near TPP ~ 20; at fixed TPP "
        "larger k is better. One series per (d, k).",
        tuple(Panel(t, f"{role}[{i}]", x="tpp", y_label="accuracy")
              for t, role, i in (("TriviaQA", "memorization_acc", 0),
                                 ("HellaSwag", "memorization_acc", 1),
                                 ("GSM8K", "reasoning_acc", 0),
                                 ("GSM-Plus", "reasoning_acc", 1))),
        BASE),
    FigureSpec(
        "fig8", "Code models: accuracy vs density",
        "HumanEval/MBPP behave like math: at large active budgets the optimum shifts to "
        "dense (code-pretrained grid).",
        (Panel("HumanEval", "humaneval/pass@1", x="density", y_label="pass@1"),
         Panel("MBPP", "mbpp/pass@1", x="density", y_label="pass@1")),
        ("code",)),
    FigureSpec(
        "fig10", "GRPO on two training sets",
        "the GRPO result holds whether GRPO trains on GSM8K or on MATH.",
        (Panel("GRPO, set 1", "grpo", x="total_params", kind="grpo", y_label="accuracy"),
         Panel("GRPO, set 2", "grpo2", x="total_params", kind="grpo", y_label="accuracy")),
        (*BASE, "grpo", "grpo2"), points="posttrain"),
    FigureSpec(
        "fig11", "Few-shot accuracy vs number of shots",
        "few-shot GSM8K accuracy is unstable across shot counts (why TTC is zero-shot).",
        (Panel("GSM8K few-shot", "fewshot", x="shots", kind="fewshot", log_x=False,
               y_label="accuracy"),),
        (*BASE, "fewshot"), points="posttrain"),
)
FIGURES_BY_ID = {f.id: f for f in FIGURES}


def get_figure(fig_id: str) -> FigureSpec:
    if fig_id not in FIGURES_BY_ID:
        raise UserError(f"unknown figure {fig_id!r}: one of {', '.join(FIGURES_BY_ID)}")
    return FIGURES_BY_ID[fig_id]
