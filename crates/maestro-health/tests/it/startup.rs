//! Startup: 503 until every component is marked, then 200 for good.

use maestro_health::{StartupComponent, StartupReport};

use crate::support::health;

#[test]
fn startup_is_503_until_marked_started_then_200() {
    let h = health();
    let probe = h.startup();
    assert_eq!(probe.status, 503);
    let StartupReport::NotStarted(body) = probe.body else {
        panic!("expected a failed startup report");
    };
    assert!(!body.started);
    assert_eq!(
        body.errors,
        [
            "database_not_initialized",
            "engine_not_initialized",
            "workflows_not_ready"
        ]
    );
    assert_eq!(body.message, "Service still starting up");

    h.mark_started();
    let probe = h.startup();
    assert_eq!(probe.status, 200);
    let StartupReport::Started(body) = probe.body else {
        panic!("expected a successful startup report");
    };
    assert!(body.started);
    assert_eq!(body.initialization.database, "initialized");
    assert_eq!(body.initialization.engine, "initialized");
    assert_eq!(body.initialization.workflows, "ready");
}

#[test]
fn components_are_marked_one_by_one() {
    let h = health();
    h.mark_initialized(StartupComponent::Database);
    let StartupReport::NotStarted(body) = h.startup().body else {
        panic!("expected a failed startup report");
    };
    assert_eq!(
        body.errors,
        ["engine_not_initialized", "workflows_not_ready"]
    );
    h.mark_initialized(StartupComponent::Engine);
    assert_eq!(h.startup().status, 503);
    assert!(!h.is_started());
    h.mark_initialized(StartupComponent::Workflows);
    assert_eq!(h.startup().status, 200);
    assert!(h.is_started());
}

#[test]
fn startup_does_not_depend_on_checks_or_draining() {
    let h = health();
    h.mark_started();
    h.set_draining(true);
    assert_eq!(h.startup().status, 200);
}
