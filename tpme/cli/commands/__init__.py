"""One module per `tpme` subcommand."""
