"""Slack: command grammar, handlers, Block Kit views, App Home, modals, charts."""
