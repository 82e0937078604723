"""Released checkpoints: the lock (``checkpoints.lock``) and verified pulls.

- ``lock``: the schema of ``checkpoints.lock`` (every released model and evaluation data set,
  with its pinned revision and per-file sha256 once resolved): validate, read, write.
- ``skeleton``: the lock's static part, generated from code (``lock --write-skeleton``).
- ``taskloss_inputs``: the task-loss inputs the lock pins (built from locked data sets, or
  carried by this artifact).
- ``update``: resolve entries against a hub (``lock --update``).
- ``pull``: download with ``huggingface_hub`` at the pinned revision into a staging
  directory, verify every file, the config and the parameter count, then rename into place.
- ``verify``: the checks a downloaded directory must pass before anything loads it.
- ``safetensors_header``: parameter counts and integrity from safetensors headers only.

The local hub stand-in (a small HTTP server speaking the hub endpoints ``huggingface_hub``
uses, ``HF_ENDPOINT``) is ``optimal_sparsity.testing.local_hub``.
"""
