"""Synthetic data generation (procedural faces and fake datasets)."""
