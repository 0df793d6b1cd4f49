"""DatasetBuilderTestCase for the rafdb builder over dummy_data/.

dummy_data/ holds rows of `curate synth rafdb` trimmed by
`python -m tfds_builders.make_dummy_data rafdb`: 4 train and 2 test images, each with its
aligned and original image and its three annotation files.
"""

import tensorflow_datasets as tfds

from tfds_builders.rafdb import rafdb_dataset_builder


class RafdbTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = rafdb_dataset_builder.Builder
    SPLITS = {"train": 4, "test": 2}
    SKIP_CHECKSUMS = True  # manual download: nothing is fetched


if __name__ == "__main__":
    tfds.testing.test_main()
