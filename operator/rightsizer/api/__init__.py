"""GPU Rightsizer."""
