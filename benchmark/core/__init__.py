"""The bottom layer: plain utilities that methods/ and metrics/ both use (seeds, checkpoints, pixels).

Nothing here imports methods/, metrics/ or the pipeline; both sides import from here, so neither needs the other.
"""
