"""Networks to explain: the zoo, PaddleSeg configs built without running code, safe weights, export.

The shipped weights and their model cards live in ``pretrained/``.
"""
