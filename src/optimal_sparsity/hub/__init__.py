"""Released checkpoints: the lock (``checkpoints.lock``), verified pulls, a local hub stand-in.

- ``lock``: the schema of ``checkpoints.lock`` (every released model and evaluation data set,
  with its pinned revision and per-file sha256 once resolved), its skeleton and ``--update``.
- ``pull``: download with ``huggingface_hub`` at the pinned revision into a staging
  directory, verify every file, the config and the parameter count, then rename into place.
- ``safetensors_header``: parameter counts and integrity from safetensors headers only.
- ``local_hub``: a small HTTP server speaking the hub endpoints ``huggingface_hub`` uses,
  for tests and offline smoke runs (``HF_ENDPOINT``).
"""
