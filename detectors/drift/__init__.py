"""Two-sample drift tests on embeddings and scalar descriptors, one test per module."""
