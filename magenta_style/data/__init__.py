"""Training inputs: the content-image pipeline, style datasets (Magenta's
TFRecords) and the procedurally drawn demo images.
"""
