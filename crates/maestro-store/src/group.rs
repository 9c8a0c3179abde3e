//! Group commit: write batches of different runs that arrive while a transaction is in flight
//! are committed together in the next one, so N runs share one commit (one WAL flush) instead
//! of paying one each.
//!
//! A single writer task drains its queue (no artificial delay: whatever queued up during the
//! previous commit goes into the next), hands the batches to the backend's
//! [`Committer::commit_group`] and answers each caller through a oneshot. Batches of one run
//! stay in arrival order. A batch the store refuses (fenced, sequence conflict, unknown run)
//! writes nothing and does not disturb the others; if the combined transaction fails as a
//! whole, every batch is retried alone so one bad batch cannot fail unrelated runs.

use std::sync::Arc;

use async_trait::async_trait;
use maestro_dag::store::{StoreError, WriteBatch};
use tokio::sync::{mpsc, oneshot};

/// The per-batch outcomes of a group transaction.
pub(crate) type GroupResult = Result<Vec<Result<(), StoreError>>, StoreError>;

/// A backend's way of committing several batches in one transaction.
#[async_trait]
pub(crate) trait Committer: Send + Sync + 'static {
    /// Writes `batches` in one transaction. `Ok` holds one result per batch (the transaction
    /// committed; refused batches wrote nothing); `Err` means the transaction failed as a whole
    /// (nothing was written, or, after a timeout, it is unknown).
    async fn commit_group(&self, batches: Arc<Vec<WriteBatch>>) -> GroupResult;
}

type Reply = oneshot::Sender<(WriteBatch, Result<(), StoreError>)>;

/// A handle on the writer task.
#[derive(Debug, Clone)]
pub(crate) struct GroupWriter {
    tx: mpsc::UnboundedSender<(WriteBatch, Reply)>,
}

impl GroupWriter {
    /// Starts the writer task on the current Tokio runtime.
    pub(crate) fn start(committer: Arc<dyn Committer>, max_batches: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(committer, rx, max_batches.max(1)));
        Self { tx }
    }

    /// Queues `batch` and waits for its commit. On failure the batch is restored as it was.
    pub(crate) async fn write(&self, batch: &mut WriteBatch) -> Result<(), StoreError> {
        let owned = std::mem::replace(batch, empty_like(batch));
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((owned, _))) = self.tx.send((owned, reply)) {
            *batch = owned;
            return Err(stopped());
        }
        match answer.await {
            Ok((owned, result)) => {
                if result.is_err() {
                    *batch = owned;
                }
                result
            }
            // The writer task is gone (its runtime shut down); the batch went with it.
            Err(_) => Err(stopped()),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's writer task has stopped".into())
}

fn empty_like(batch: &WriteBatch) -> WriteBatch {
    WriteBatch {
        run_id: batch.run_id.clone(),
        epoch: batch.epoch,
        run: None,
        nodes: Vec::new(),
        events: Vec::new(),
    }
}

/// Takes the batches back from a commit (cloning them only when a timed-out commit still holds
/// them).
pub(crate) fn reclaim(batches: Arc<Vec<WriteBatch>>) -> Vec<WriteBatch> {
    Arc::try_unwrap(batches).unwrap_or_else(|shared| (*shared).clone())
}

/// Commits one batch alone.
pub(crate) async fn commit_one(
    committer: &dyn Committer,
    batch: WriteBatch,
) -> (WriteBatch, Result<(), StoreError>) {
    let shared = Arc::new(vec![batch]);
    let result = committer.commit_group(shared.clone()).await;
    let res = match result {
        Ok(mut r) if r.len() == 1 => r.pop().unwrap_or(Ok(())),
        Ok(_) => Err(StoreError::Other("group commit lost a result".into())),
        Err(e) => Err(e),
    };
    let batch = reclaim(shared).pop().expect("one batch in, one batch out");
    (batch, res)
}

async fn run(
    committer: Arc<dyn Committer>,
    mut rx: mpsc::UnboundedReceiver<(WriteBatch, Reply)>,
    max: usize,
) {
    let mut batches = Vec::new();
    let mut replies: Vec<Reply> = Vec::new();
    while let Some((b, r)) = rx.recv().await {
        batches.push(b);
        replies.push(r);
        while batches.len() < max {
            match rx.try_recv() {
                Ok((b, r)) => {
                    batches.push(b);
                    replies.push(r);
                }
                Err(_) => break,
            }
        }
        let n = batches.len();
        let shared = Arc::new(std::mem::take(&mut batches));
        let result = committer.commit_group(shared.clone()).await;
        let back = reclaim(shared);
        match result {
            Ok(results) if results.len() == n => {
                for ((reply, b), res) in replies.drain(..).zip(back).zip(results) {
                    let _ = reply.send((b, res));
                }
            }
            Err(e) if n == 1 => {
                for (reply, b) in replies.drain(..).zip(back) {
                    let _ = reply.send((b, Err(e.clone())));
                }
            }
            other => {
                if let Err(e) = &other {
                    tracing::debug!(error = %e, batches = n, "group commit failed; retrying its batches one by one");
                }
                for (reply, b) in replies.drain(..).zip(back) {
                    let _ = reply.send(commit_one(&*committer, b).await);
                }
            }
        }
    }
}
