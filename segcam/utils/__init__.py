"""Small helpers every layer may use: name registries with "did you mean" errors, atomic file writes."""
