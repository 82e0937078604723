"""Untrusted weights: no pickle in any loading path, never trust_remote_code."""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
FORBIDDEN = [
    (re.compile(r"trust_remote_code\s*=\s*True"), "trust_remote_code=True"),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\bdill\.loads?\("), "dill.load"),
    (re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"),
     "torch.load without weights_only=True"),
    (re.compile(r"\.from_pretrained\([^)]*use_safetensors\s*=\s*False"),
     "use_safetensors=False"),
]


def test_no_unsafe_loading_in_source():
    hits = []
    files = list(SRC.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        for pat, what in FORBIDDEN:
            for m in pat.finditer(text):
                line = text[:m.start()].count("\n") + 1
                hits.append(f"{path.relative_to(SRC)}:{line}: {what}")
    assert not hits, "\n".join(hits)


def test_scan_catches_what_it_should(tmp_path):
    bad = "m = torch.load(p)\nx = AutoModel.from_pretrained(d, trust_remote_code=True)\n"
    found = {what for pat, what in FORBIDDEN if pat.search(bad)}
    assert found == {"torch.load without weights_only=True", "trust_remote_code=True"}
    assert not any(pat.search("torch.load(p, weights_only=True)") for pat, _ in FORBIDDEN)
