"""Every Dataset format is read by one kind of task: text (llm, custom) or images (vision)."""

from __future__ import annotations

from tensorone.api.v1alpha1.dataset import IMAGE_FORMATS, TEXT_FORMATS, DatasetFormat


def test_every_format_is_text_or_image_and_never_both() -> None:
    assert set(TEXT_FORMATS) | set(IMAGE_FORMATS) == set(DatasetFormat)
    assert not set(TEXT_FORMATS) & set(IMAGE_FORMATS)
