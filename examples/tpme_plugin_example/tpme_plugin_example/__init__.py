"""An example tpme plugin package (see top_layers.py)."""
