"""Graft: serving hybrid (split) DNN inference with latency SLO guarantees."""

__version__ = "0.1.0"
