//! A deliberately broken mode, compiled only with the `negative-control` feature: when switched
//! on, a transfer whose id already exists with the same fields is applied again instead of
//! being answered `exists`. The partition harness runs a cluster in this mode and must report
//! the double application (its exactly-once checker), which shows the checker can fail.

use std::sync::atomic::{AtomicBool, Ordering};

static SKIP_IDEMPOTENCY: AtomicBool = AtomicBool::new(false);

/// Switches the broken mode on for this process (every node of a cluster must agree).
pub fn skip_idempotency() {
    SKIP_IDEMPOTENCY.store(true, Ordering::SeqCst);
}

pub(crate) fn skipping_idempotency() -> bool {
    SKIP_IDEMPOTENCY.load(Ordering::Relaxed)
}
