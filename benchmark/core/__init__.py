"""The bottom layer: plain utilities that know nothing of datasets, methods, metrics or runs.

errors (XbenchError, one-line user errors), io (atomic writes), seeds (sha256-derived seeds), checkpoints
(torch files with a recorded sha256), distributed (torchrun ranks), resize (uint8 image batches), cache
(content-keyed arrays on disk), sheets (contact sheets of images), parallel (per-case work over the cores).
"""
