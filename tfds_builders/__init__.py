"""TFDS builders of the toolkit's facial-expression datasets.

Importing this package registers ``affectnet``, ``ferplus`` and ``rafdb`` with TFDS, so
``tfds.builder("affectnet", data_dir=...)`` / ``tfds.load(...)`` work after
``import tfds_builders`` and ``tfds build affectnet --imports tfds_builders`` finds them.
Each builder lives in its own folder (``<name>/<name>_dataset_builder.py``, class
``Builder``), so ``cd tfds_builders && tfds build affectnet`` works as well.
"""

from tfds_builders.affectnet import affectnet_dataset_builder as affectnet
from tfds_builders.ferplus import ferplus_dataset_builder as ferplus
from tfds_builders.rafdb import rafdb_dataset_builder as rafdb

__all__ = ["affectnet", "ferplus", "rafdb"]
