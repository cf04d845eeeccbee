"""One module per web framework; each only translates between its framework and the core."""
