"""The explainer: hooks, layer lookup, targets, scores, CAM methods, the engine and its frozen result objects."""
