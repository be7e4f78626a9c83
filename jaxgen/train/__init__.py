"""Training the shapes model: data, losses, state, checkpoints, the data-parallel loop, export."""
