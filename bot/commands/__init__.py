"""The built-in `/beacon` commands, one module per concern; each registers itself with
`bot.registry.command`. A new command is a new module here and needs no edit elsewhere."""
