"""What the service runs on: logs, audit, metrics, time sync, rate limits, change notices and the Redis link."""
