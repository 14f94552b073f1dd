"""Stage 5: training: strict configs, the data bundle, the loop, checkpoints and run logs."""
