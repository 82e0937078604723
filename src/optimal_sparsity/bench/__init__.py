"""Benchmarks: ``./reproduce bench`` and ``nox -s bench`` (see BENCHMARKS.md).

``cases`` declares what is measured (one small spec per row, grouped into suites),
``builders`` turns a case into peers with identical weights, ``timing`` times peers
side by side, ``memory`` measures peak memory in a fresh process, ``run`` runs a suite
and checks the targets, ``report`` prints the tables.
"""
