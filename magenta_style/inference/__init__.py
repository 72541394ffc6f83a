"""Inference: loading any model (checkpoint or export), the one stylize path,
style specs, per-pixel style maps and tiling of large images.
"""
