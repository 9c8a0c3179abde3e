//! Maestro health: the registry of health checks and the startup, readiness and liveness probe logic (filled in by the server issue).
