"""TPME and its weights; ranking metrics."""
