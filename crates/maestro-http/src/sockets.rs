//! WebSocket admission: at most `max_websockets` open sockets per server and
//! `max_websockets_per_key` per run or workflow. A [`SocketPermit`] holds one place and gives
//! it back when dropped, so a socket that ends in any way (close, error, panic) frees it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Open WebSockets, in total and by key (`run:<id>` or `workflow:<id>`).
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketLimits {
    inner: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_key: HashMap<String, usize>,
}

/// Why a socket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server holds its maximum of sockets.
    Server(usize),
    /// The run or workflow holds its maximum of sockets.
    Key(usize),
}

impl SocketLimits {
    /// Takes a place for a socket on `key`, or says which limit is reached.
    pub(crate) fn acquire(
        &self,
        key: String,
        total: usize,
        per_key: usize,
    ) -> Result<SocketPermit, Refusal> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if g.total >= total {
            return Err(Refusal::Server(total));
        }
        let n = g.by_key.get(&key).copied().unwrap_or(0);
        if n >= per_key {
            return Err(Refusal::Key(per_key));
        }
        g.total += 1;
        g.by_key.insert(key.clone(), n + 1);
        Ok(SocketPermit {
            limits: self.clone(),
            key,
        })
    }

    /// Sockets open now.
    pub(crate) fn open(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One admitted socket; its place is given back on drop.
#[derive(Debug)]
pub(crate) struct SocketPermit {
    limits: SocketLimits,
    key: String,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        let mut g = self
            .limits
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.total = g.total.saturating_sub(1);
        if let Some(n) = g.by_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                g.by_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_per_key_and_in_total_and_free_on_drop() {
        let l = SocketLimits::default();
        let a = l.acquire("run:a".into(), 3, 2).unwrap();
        let _b = l.acquire("run:a".into(), 3, 2).unwrap();
        assert_eq!(
            l.acquire("run:a".into(), 3, 2).unwrap_err(),
            Refusal::Key(2)
        );
        let _c = l.acquire("run:b".into(), 3, 2).unwrap();
        assert_eq!(
            l.acquire("run:c".into(), 3, 2).unwrap_err(),
            Refusal::Server(3)
        );
        drop(a);
        assert_eq!(l.open(), 2);
        assert!(l.acquire("run:a".into(), 3, 2).is_ok());
    }
}
