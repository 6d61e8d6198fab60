"""Storage: runs on disk (atomic writes, locks, checkpoints), the adapter library's summary, merged export."""
