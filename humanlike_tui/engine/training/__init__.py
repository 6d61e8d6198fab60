"""Training: schedule (pure functions of the step), objectives (SFT, DPO), distributed position, checkpoints,
the trainer's loop, and `run.run_training`, the entry point."""
