//! Gateway routes of ai-service (not wired yet).
