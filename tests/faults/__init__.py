"""Fault injection: crashes, database trouble, hanging providers, shutdown."""
