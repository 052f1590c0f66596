"""Deterministic demo data: a realistic B2B SaaS book of business with a hidden churn process."""
