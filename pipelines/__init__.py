"""campaign-sync's command line, pipeline assembly, destinations and reports."""
