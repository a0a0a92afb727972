"""Evaluation metrics (numpy in, numpy out)."""
