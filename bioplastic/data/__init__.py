"""bioplastic.data (under construction)."""
