"""The job runtime: task board, controllers, site runners, transports and records."""
