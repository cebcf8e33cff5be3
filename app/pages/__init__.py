"""The CMIO's pages: catalogue, model card, audit trail, safety, patient AI activity, draft review."""
