"""Declarative model specs (TOML), installed as the package data ``bioplastic.specs``."""
