"""Server-side workflows: each one drives tasks through the task board."""
