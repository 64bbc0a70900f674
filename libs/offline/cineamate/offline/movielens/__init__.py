"""MovieLens 1M: the exact file format, a calibrated synthetic generator, fetch and load."""
