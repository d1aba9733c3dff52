"""Loghub's grouping accuracy (GA), the score of the Loghub template-mining benchmark.

A line counts as correct iff the set of lines in its predicted group equals the set of lines in its ground-truth
group; GA is the share of correct lines. The function is the one the generated-corpus benchmark uses
(:func:`eval.logcorpus.grouping_accuracy`), re-exported so both benchmarks score alike.
"""

from eval.logcorpus import grouping_accuracy

__all__ = ["grouping_accuracy"]
