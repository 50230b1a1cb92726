"""Notifier: rules and subscriptions, dispatcher, channels, digests, jobs."""
