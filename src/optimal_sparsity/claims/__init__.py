"""The paper's claims as code: each has an id, a statement and a predicate over the
results table that returns a verdict with the statistic behind it."""
