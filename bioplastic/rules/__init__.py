"""bioplastic.rules (under construction)."""
