"""IISAN (DESIGN section 3): options, side networks, towers, the hidden-state cache, the two
registered methods and the `tpme cache` subcommand. Importing the package registers them."""
from tpme.methods.iisan import command, methods

__all__ = ["command", "methods"]
