"""Tracking: tokens, instrumentation of outgoing HTML, the HTTP endpoints, the event recorder,
machine/human classification and the engagement rules."""
