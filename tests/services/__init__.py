"""Real services the tests start (brokers, ...), shared by several test packages."""
