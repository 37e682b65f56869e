"""bioplastic.training (under construction)."""
