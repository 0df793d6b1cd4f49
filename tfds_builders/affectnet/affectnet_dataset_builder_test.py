"""DatasetBuilderTestCase for the affectnet builder, both configs, over dummy_data/.

dummy_data/ is the original layout written by `curate synth affectnet` and trimmed by
`python -m tfds_builders.make_dummy_data affectnet`: 9 training rows (one non-positive box,
one missing and one truncated image, an LZW TIFF, PNG, JPEG variants) and 3 validation rows.
"""

import tensorflow_datasets as tfds

from tfds_builders.affectnet import affectnet_dataset_builder


class AffectnetTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = affectnet_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["crop224", "original"]
    SPLITS = {"train": 6, "validation": 3}
    SKIP_CHECKSUMS = True  # manual download: nothing is fetched


if __name__ == "__main__":
    tfds.testing.test_main()
