"""The model and its rules. Standard library only; no IO."""
