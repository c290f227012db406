"""The method registry and one module per method; importing a module registers its method."""
from tpme.methods.registry import (
    Method,
    NoOptions,
    PrepareContext,
    available_methods,
    get_method,
    load_plugins,
    register_family,
    register_method,
)

__all__ = ["Method", "NoOptions", "PrepareContext", "available_methods", "get_method", "load_plugins", "register_family", "register_method"]
