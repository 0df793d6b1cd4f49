"""The `rafdb` TFDS dataset (manual download)."""
