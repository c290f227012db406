"""Backbones, item towers, the SASRec user encoder and the recommender."""
