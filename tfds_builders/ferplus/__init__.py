"""The `ferplus` TFDS dataset (manual download)."""
