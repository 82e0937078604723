"""Run inside another transformers environment (tests/compat/): load an export the way a
user of that version would and print what it computes, as JSON on stdout.

    python probe_transformers.py TEXTS_JSON EXPORT_DIR...
"""

import json
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def probe(export: str, texts: list[str]) -> dict:
    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
    out = {"transformers": transformers.__version__, "tokenizer_class": type(tok).__name__,
           "model_class": type(model).__name__, "model_max_length": tok.model_max_length,
           "input_names": None, "ids": [], "logits": [], "generated": []}
    for text in texts:
        enc = tok(text, return_tensors="pt")
        out["input_names"] = sorted(enc.keys())
        with torch.no_grad():
            out["logits"].append(model(**enc).logits[0].tolist())
            gen = model.generate(**enc, max_new_tokens=8, do_sample=False)
        out["ids"].append(enc["input_ids"][0].tolist())
        out["generated"].append(gen[0, enc["input_ids"].shape[1]:].tolist())
    return out


def main() -> None:
    texts = json.loads(Path(sys.argv[1]).read_text())
    json.dump({export: probe(export, texts) for export in sys.argv[2:]}, sys.stdout)


if __name__ == "__main__":
    main()
