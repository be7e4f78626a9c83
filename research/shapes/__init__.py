"""Probes and experiments behind the default model's decisions; see README.md."""
