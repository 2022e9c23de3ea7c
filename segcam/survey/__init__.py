"""Survey-sized work: the run folder and its journal, the per-image pipeline, tiles, and the Ray engine."""
