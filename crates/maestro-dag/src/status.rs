//! Run and node statuses (DESIGN §3).

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses a wire name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// The status of a run.
    RunStatus {
        /// Created, not started yet.
        Pending => "pending",
        /// Scheduling nodes.
        Running => "running",
        /// No new node starts until resumed.
        Paused => "paused",
        /// Every node finished and none failed.
        Completed => "completed",
        /// Every node finished and at least one failed.
        Failed => "failed",
        /// Cancelled by a user.
        Cancelled => "cancelled",
    }
}

impl RunStatus {
    /// Whether the run has ended (it may still be retried from its failed nodes).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

wire_enum! {
    /// The status of a node within a run.
    NodeStatus {
        /// Waiting for its dependencies.
        Pending => "pending",
        /// Its trigger rule holds; waiting for a concurrency slot.
        Ready => "ready",
        /// An attempt is executing (or waiting to retry).
        Running => "running",
        /// Finished with an output.
        Completed => "completed",
        /// Failed for good.
        Failed => "failed",
        /// Will not run (condition false, trigger rule unmet, or the run failed fast).
        Skipped => "skipped",
        /// Stopped by a cancelled run.
        Cancelled => "cancelled",
        /// A `human_review` node waiting for approval.
        WaitingApproval => "waiting_approval",
    }
}

impl NodeStatus {
    /// Whether the node has reached its final state for this run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }
}
