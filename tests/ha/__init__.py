"""High availability: several API replicas and engine candidates on one real PostgreSQL."""
