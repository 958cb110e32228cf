"""Stage A and B: class activation maps from a multi-label classifier, and their peak points."""
