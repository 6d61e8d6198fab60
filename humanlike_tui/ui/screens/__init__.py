"""The workbench's screens, one file each."""
