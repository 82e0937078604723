"""One small declarative definition per paper figure, drawn from the results table."""
