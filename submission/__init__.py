"""Step 5: challenge submissions and detection files (run as ``python -m submission``)."""
