"""De-identification: what leaves Countersign for a language model carries no direct identifier."""
