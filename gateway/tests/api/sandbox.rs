//! Gateway routes of sandbox-service (not wired yet).
