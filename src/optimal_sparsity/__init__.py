"""optimal-sparsity: reproducibility artifact for arXiv 2508.18672.

Data flows one way: config -> train -> checkpoint -> evaluate -> results table
-> figure and claim verdicts -> report.
"""

__version__ = "0.1.0"
