"""Bring your own history: bulk import and export of customers and their facts (docs/importing-history.md)."""
