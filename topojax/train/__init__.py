"""Trainer pieces: sharding, checkpointing, metric writing, reports."""
