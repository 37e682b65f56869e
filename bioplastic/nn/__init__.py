"""bioplastic.nn (under construction)."""
