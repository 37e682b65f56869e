"""bioplastic.theory (under construction)."""
