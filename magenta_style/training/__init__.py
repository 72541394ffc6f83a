"""Training: the distributed train loop, checkpoint directories (locking,
resuming), summaries and evaluation of checkpoints.
"""
