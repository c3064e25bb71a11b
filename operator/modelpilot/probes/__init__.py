"""Calls out of the cluster API: Prometheus queries (and, later, webhooks). Async and
bounded by timeouts: they never run inside a reconcile."""
