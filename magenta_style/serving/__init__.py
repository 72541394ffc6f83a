"""Serving: the SavedModel export (signatures, warmup records, numbered
versions) for TF Serving, tensorflow_hub and TFLite.
"""
