"""kopf wiring and the one reconcile it calls."""
