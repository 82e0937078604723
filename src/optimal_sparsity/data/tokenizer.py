"""Byte-level BPE trained on the corpus, saved as a Hugging Face tokenizer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

EOS = "<|endoftext|>"
PAD = "<|pad|>"
CONFIG_FILE = "tokenizer_config.json"
# transformers 5.x saves a tokenizer.json-only tokenizer as class "TokenizersBackend",
# which 4.x (vLLM's pin, lm-eval on 4.57) cannot load; 4.x reads the same files as
# "PreTrainedTokenizerFast". Without the input names 4.x also returns token_type_ids,
# which Mixtral's generate() rejects.
GENERIC_CLASS = "PreTrainedTokenizerFast"
FIVE_ONLY_CLASSES = ("TokenizersBackend",)
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


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
    make_portable(out_dir)
    return out_dir


def make_portable(directory: str | Path, model_max_length: int | None = None) -> None:
    """Rewrite ``directory``'s tokenizer_config.json so that transformers 4.x and 5.x
    both load it: a 5.x-only class becomes the generic fast class (a named class such
    as ``LlamaTokenizerFast`` is kept), the inputs are the ones a Mixtral takes, and
    ``model_max_length``, where given, is the model's window (a corpus tokenizer
    serves models of several windows)."""
    path = Path(directory) / CONFIG_FILE
    config = json.loads(path.read_text()) if path.is_file() else {}
    if config.get("tokenizer_class") in (None, *FIVE_ONLY_CLASSES):
        config["tokenizer_class"] = GENERIC_CLASS
    config["model_input_names"] = MODEL_INPUT_NAMES
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_tokenizer(path: str | Path):
    """Any HF tokenizer from a local directory (never the hub, never remote code)."""
    from transformers import AutoTokenizer

    from optimal_sparsity.errors import UserError

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"no tokenizer directory at {path}")
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False,
                                             local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is not a loadable HF tokenizer directory: {first}") from None
