"""Tests of the SDK and the t1 job verbs."""
