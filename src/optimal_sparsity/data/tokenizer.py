"""Byte-level BPE trained on the corpus, saved as a Hugging Face tokenizer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: str | Path,
              added: Sequence[str] = ()) -> Path:
    """Train a byte-level BPE of ``vocab_size`` tokens and save it with
    ``PreTrainedTokenizerFast.save_pretrained`` (tokenizer.json + config). ``added``: strings
    that become single (non-special) added tokens on top of the BPE vocabulary, matched
    verbatim in any text, so plain transformers and lm-eval load and use them."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    if added:
        tok.add_tokens([AddedToken(t, normalized=False) for t in added])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   pad_token=PAD, model_max_length=1_000_000)
    out_dir = Path(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir


def load_tokenizer(path: str | Path):
    """Any HF tokenizer by local path (never remote code)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
