"""Image and video files: decoding, encoding, atomic writes, pixel limits and
colour-space conversions.
"""
