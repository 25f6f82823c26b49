"""Training: the loop, the jit-compiled step, optimizers, augmentation, the learning monitor, logs, signals."""
