"""The base of the builders whose images are files the user supplies: where those files are, and how each
image is stored (its encoded bytes as they are, in order) in the split 'images' of the pair-index layout."""

from __future__ import annotations

import os

import tensorflow_datasets as tfds


def manual_dir(builder, dl_manager) -> str:
    """The folder of the user's source files, or an error naming it with the download instructions."""
    from relrank_datasets.sources import SourceFilesError, with_instructions

    try:
        return os.fspath(dl_manager.manual_dir)
    except AssertionError as error:
        first = str(error).splitlines()[0].split(" Create it")[0]
        raise SourceFilesError(with_instructions(first, builder.MANUAL_DOWNLOAD_INSTRUCTIONS)) from None


class ImageFilesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A builder whose split 'images' stores image files, in order, with their encoded bytes as they are."""

    def _generate_examples(self, paths: list[str], names: list[str], extra: dict | None = None):
        from relrank_datasets.sources import image_bytes

        for index, (path, name) in enumerate(zip(paths, names)):
            example = {"image": image_bytes(path), "index": index, "name": name}
            example.update({key: values[index] for key, values in (extra or {}).items()})
            yield index, example
