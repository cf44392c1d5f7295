"""The one training engine (loop, precision, checkpoints, distributed) shared by every task."""
