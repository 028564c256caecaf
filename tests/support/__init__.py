"""Helpers shared by the e2e and contract tests."""
