"""The reliability suite: faults, damage and misuse, against real systems."""
