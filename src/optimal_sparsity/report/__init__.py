"""The report an evaluator reads: claims table, figures, regressions, environment."""
