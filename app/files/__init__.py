"""Reading the repository's own YAML and JSON files (cards, knowledge bases) against their schemas."""
