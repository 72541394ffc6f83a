"""The networks: the stylization generators (Magenta's transformer, BOE's YUV
generator), their layers, the VGG loss network, the losses on its features and
the checkpoint layouts that name their weights.
"""
