"""Composition root: the mailbeacon command, the server, settings and the demo."""
