"""Library code of the suite: every function takes its settings as arguments (no config import)."""
