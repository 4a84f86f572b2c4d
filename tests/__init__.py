"""bucketreel test suite."""
