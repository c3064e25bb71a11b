"""Kubernetes I/O: server-side apply of children, reads of their status, Events."""
