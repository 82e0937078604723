"""Scaled-down pre-training data: proxy tasks, corpus mixture, tokenizer, token shards.

The corpus stands in for the paper's pre-training mix with one proxy per evaluation task:

* ``knowledge``  TriviaQA proxy (memorization, generation): facts of a synthetic
  knowledge base, as biographies and as question/answer pairs; evaluation asks facts
  that were seen in training.
* ``scripts``    HellaSwag proxy (memorization, multiple choice): memorized activity
  scripts; evaluation picks the right next step among 4 by log-likelihood.
* ``arithmetic`` GSM8K proxy (reasoning, generation): multi-step word problems with a
  chain of thought ending ``#### N``; evaluation problems are new compositions.
* GSM-Plus proxy (reasoning, robustness): perturbed variants of the held-out problems.
"""
