"""Built-in command plugins (click commands added through ``register_commands``)."""
