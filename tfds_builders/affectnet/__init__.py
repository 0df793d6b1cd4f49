"""The `affectnet` TFDS dataset (manual download)."""
