//! What every fuzz target shares: the panic policy.
//!
//! libfuzzer-sys installs a panic hook that aborts on *every* panic, even one that the code under
//! test catches on purpose. Maestro contains panics in two places by design: `Condition` wraps
//! the CEL parser and interpreter in `catch_unwind` (they are not hardened), and the HTTP service
//! turns a panicking handler into a 500. A panic that escapes the code under test is still a
//! crash: libfuzzer-sys catches it at the top of the target and aborts. So by default the targets
//! replace the hook with one that reports each distinct panic location once on stderr (so
//! contained panics are visible in the log and can be reported) and lets the code under test
//! decide. `MAESTRO_FUZZ_PANICS=abort` keeps libfuzzer-sys's hook, making a contained panic a
//! crash as well (to collect inputs for a contained panic).

use std::collections::HashSet;
use std::sync::{Mutex, Once};

/// Installs the panic policy (once per process).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("MAESTRO_FUZZ_PANICS").is_some_and(|v| v == "abort") {
            return;
        }
        static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map_or_else(|| "unknown".to_string(), ToString::to_string);
            let mut seen = SEEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen
                .get_or_insert_with(HashSet::new)
                .insert(location.clone())
            {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                eprintln!("maestro-fuzz: panic at {location}: {message}");
            }
        }));
    });
}
