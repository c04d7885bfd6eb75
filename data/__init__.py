"""Data shipped with rprim: the frozen evaluation suite (suite/) and the 3-letter word list."""
