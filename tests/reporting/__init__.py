"""Tests of tensorone.reporting: the progress reporting of the trainer and of custom images."""
