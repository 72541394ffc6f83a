"""Per-image optimization of the pixels (Gatys et al.; semantic patch
transfer and neural doodles).
"""
