"""Research code kept beside the product: probes and experiments, one folder per domain."""
