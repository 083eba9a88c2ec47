"""Running task commands for real: identities, processes, output, and process identity for reaping."""
