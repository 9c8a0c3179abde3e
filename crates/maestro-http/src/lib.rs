//! Maestro HTTP surface: routes, JSON, live events, probes and metrics (filled in by the server issue).
