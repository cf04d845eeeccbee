"""The frontends: one module per framework and per mount direction, translation only."""
