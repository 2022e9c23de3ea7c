"""Figures for papers: multi-panel figures of maps, and panels computed from photos."""
