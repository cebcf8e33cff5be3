"""The high-risk checkpoint: a held AI draft is reviewed, edited and signed (or rejected) by a clinician."""
