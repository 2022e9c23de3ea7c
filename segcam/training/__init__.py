"""Training and evaluation on Paddle 3: our losses, metrics, data set and loop.

PaddleSeg 2.8's own losses, ``core.train`` and ``core.evaluate`` fail on
Paddle 3, so this package replaces them while still reading PaddleSeg YAML
(``type: OhemCrossEntropyLoss``, ``type: CrackDataset``, PaddleSeg transforms).
"""
