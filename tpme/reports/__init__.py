"""Tables, plots and reports; they read result records only."""
