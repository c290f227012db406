"""Importers: published measurements (other people's result files) as tpme records, so that
`tpme score`, `report`, `sensitivity` and `compare` treat them as any run. Imports only
tpme.results (and tpme.errors); the CLI's `tpme import` writes what they read."""
from tpme.importers.registry import ImportResult, Importer, Refusal, Refused, available_importers, get_importer, register_importer

__all__ = ["ImportResult", "Importer", "Refusal", "Refused", "available_importers", "get_importer", "register_importer"]
