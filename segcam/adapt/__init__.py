"""Adapting a network to a survey: training labels from a reviewer's verdicts, and the fine-tune."""
