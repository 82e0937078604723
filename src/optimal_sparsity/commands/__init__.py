"""Subcommand modules of the CLI (see optimal_sparsity.cli.COMMAND_MODULES)."""
