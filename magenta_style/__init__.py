"""magenta_style: multi-style image stylization (Dumoulin, Shlens, Kudlur 2016) in TF2/Keras.

Importing the package has no side effects; import the submodule you need,
e.g. `from magenta_style import transformer`.
"""

__version__ = "0.1.0"
