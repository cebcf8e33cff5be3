"""Evaluation of each model on a labelled synthetic cohort; the results fill the model card."""
