"""qbench's built-in plugins, registered like any third-party plugin (the host eats its own food)."""
