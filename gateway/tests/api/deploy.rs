//! Gateway routes of deploy-service (not wired yet).
