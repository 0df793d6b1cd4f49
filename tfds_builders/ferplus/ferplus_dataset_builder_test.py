"""DatasetBuilderTestCase for the ferplus builder over dummy_data/.

dummy_data/ holds rows of `curate synth ferplus` trimmed by
`python -m tfds_builders.make_dummy_data ferplus`: 5 Training rows (one with an empty
`Image name` and ten NF votes), 3 PublicTest and 3 PrivateTest rows, aligned line by line.
"""

import tensorflow_datasets as tfds

from tfds_builders.ferplus import ferplus_dataset_builder


class FerplusTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = ferplus_dataset_builder.Builder
    SPLITS = {"train": 5, "validation": 3, "test": 3}
    SKIP_CHECKSUMS = True  # manual download: nothing is fetched


if __name__ == "__main__":
    tfds.testing.test_main()
