"""The kernel every app builds on: sign-in and roles, API plumbing, errors, admin scoping, task
enqueueing and the after-commit event hooks. It imports no domain app."""
