"""Names shared by the hub tests (the served repositories and the tiny grid point)."""

from optimal_sparsity.grid import scaled_config

MODEL_REPO = "test-org/optimal-sparsity-math-d32-E4-k2"
DATA_REPO = "test-org/tiny-gsm"
PICKLE_REPO = "test-org/pickled-only"
TINY = scaled_config(32, 4, 2, n_layers=2, vocab_size=96, max_seq_len=64)
