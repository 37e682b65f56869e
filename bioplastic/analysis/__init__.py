"""bioplastic.analysis (under construction)."""
