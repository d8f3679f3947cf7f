"""The TensorOne trainer: the program that runs in the training pods (``torchrun -m trainer``) and,
unchanged, on a laptop (``t1 train``)."""
