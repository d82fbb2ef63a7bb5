"""Consumers: the pure projections and the runtime that folds the live stream."""
