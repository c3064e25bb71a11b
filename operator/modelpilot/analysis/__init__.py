"""Canary analysis, pure: the PromQL a check runs (per gateway flavor) and the verdict
on its numbers. Running the queries is I/O and lives in `modelpilot.probes`."""
