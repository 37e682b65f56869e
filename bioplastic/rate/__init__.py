"""bioplastic.rate (under construction)."""
