"""Outreach: templates, audiences, mailboxes, campaigns, sequences, A/B tests."""
