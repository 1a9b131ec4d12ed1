//! How long storage may keep a command waiting, the retry schedule and its one-line
//! warnings, and which failures mean the service was not reached or refused who we are.

use std::time::Duration;

use opendal::layers::RetryEvent;

/// How long storage may keep a command waiting. A request that fails or stalls is tried
/// again `retries` times; each attempt may take `timeout / (retries + 1)` without an
/// answer (for a transfer: to complete one object's request), so an endpoint that never
/// answers fails the request after about `timeout`, plus the back-off between attempts
/// (0.5, 1, 2, ... s, at most 5 s, each up to doubled by jitter). docs/usage.md has the
/// arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Total time a request may go unanswered, over all its attempts.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: usize,
}

impl Default for StorageLimits {
    fn default() -> Self {
        StorageLimits {
            timeout: Duration::from_secs(60),
            retries: 3,
        }
    }
}

impl StorageLimits {
    /// How long one attempt may take (at least a second).
    pub fn attempt(&self) -> Duration {
        let n = u32::try_from(self.retries.saturating_add(1)).unwrap_or(u32::MAX);
        (self.timeout / n).max(Duration::from_secs(1))
    }
}

/// One line per retry, without a backtrace (OpenDAL's own warning prints its error's
/// `Debug`, which holds one when RUST_BACKTRACE is set).
pub(super) fn retry_warning(ev: RetryEvent<'_>) {
    warn_retry(ev.attempt, ev.retry_after, ev.err);
}

pub(super) fn warn_retry(attempt: impl std::fmt::Display, after: Duration, e: &opendal::Error) {
    tracing::warn!(
        "storage request failed (attempt {attempt}), trying again in {:.1} s: {}",
        after.as_secs_f64(),
        crate::error::one_line(e)
    );
}

/// The back-off before retry `n` (1-based): 0.5 s doubled each time, at most 5 s, plus up to
/// as much again of random jitter; the schedule the retry layer uses.
pub(super) fn backoff(n: usize) -> Duration {
    let exp = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX).min(8);
    let base = (Duration::from_millis(500) * 2u32.pow(exp)).min(Duration::from_secs(5));
    base.mul_f64(1.0 + rand::random::<f64>())
}

/// Did the service answer 401 Unauthorized (no or wrong credentials)? Some services
/// (WebDAV) report it as `Unexpected`.
pub(super) fn unauthorized(e: &opendal::Error) -> bool {
    format!("{e:?}").contains("status: 401")
}

/// Did the request fail to reach the service at all (connection refused, DNS, timeout)?
/// OpenDAL reports these as `Unexpected` once retries are exhausted.
pub(super) fn unreachable(e: &opendal::Error) -> bool {
    let text = format!("{e:?}").to_ascii_lowercase();
    [
        "error sending request",
        "tcp connect",
        "dns error",
        "connection refused",
        "timed out",
        "timeout",
    ]
    .iter()
    .any(|s| text.contains(s))
}
