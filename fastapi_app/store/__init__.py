"""What the service keeps in Redis: records and their pure transitions, keys, changes, queues, leases."""
