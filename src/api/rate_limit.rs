//! Per-caller rate limits (`rate_limit_per_second`, `rate_limit_burst`): a token bucket for
//! each API key, or for each client address on a server without keys, drawn on by the
//! guard once it knows who is calling. Off unless configured.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};

use super::auth::Caller;

/// How many requests a caller may make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a second, on average (`rate_limit_per_second`).
    pub per_second: NonZeroU32,
    /// Requests at once before a caller is held to `per_second` (`rate_limit_burst`).
    pub burst: NonZeroU32,
}

/// Whose bucket a request draws on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    /// An API key, by name.
    Key(Arc<str>),
    /// A client address, on a server without keys (`None`: the address is not known).
    Address(Option<IpAddr>),
}

/// A request over its caller's limit.
#[derive(Debug)]
pub struct Limited {
    /// Which limit, whose, and when to try again.
    pub message: String,
    /// How long until the bucket has a request again.
    pub retry_after: Duration,
}

/// Buckets kept before the full (idle) ones are dropped: client addresses come and go.
const MAX_BUCKETS: usize = 10_000;

/// Requests between two looks at how many buckets there are, so that many busy clients do
/// not make every request walk them all.
const TIDY_EVERY: u64 = 1024;

/// The buckets of a server with a rate limit.
pub struct Limiter {
    limit: RateLimit,
    /// By key when the server has keys, else by address.
    by_key: bool,
    buckets: DefaultKeyedRateLimiter<Bucket>,
    /// Requests taken so far, for [`TIDY_EVERY`].
    taken: AtomicU64,
}

impl Limiter {
    /// Buckets of `limit` per key when `by_key`, else per client address.
    pub fn new(limit: RateLimit, by_key: bool) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        Self {
            limit,
            by_key,
            buckets: RateLimiter::keyed(quota),
            taken: AtomicU64::new(0),
        }
    }

    /// Takes a request from `caller`'s bucket (or `address`'s); `Err` says which limit it
    /// is over and when to try again.
    pub fn take(&self, caller: &Caller, address: Option<IpAddr>) -> Result<(), Limited> {
        let bucket = if self.by_key {
            Bucket::Key(caller.name.clone())
        } else {
            Bucket::Address(address)
        };
        let taken = self.taken.fetch_add(1, Ordering::Relaxed);
        if taken.is_multiple_of(TIDY_EVERY) && self.buckets.len() > MAX_BUCKETS {
            self.buckets.retain_recent();
        }
        self.buckets.check_key(&bucket).map_err(|not_until| {
            let wait = not_until
                .wait_time_from(self.buckets.clock().now())
                .max(Duration::from_millis(1));
            let who = match &bucket {
                Bucket::Key(name) => format!("the key {name:?}"),
                Bucket::Address(Some(ip)) => format!("the address {ip}"),
                Bucket::Address(None) => "this client".to_owned(),
            };
            Limited {
                message: format!(
                    "rate_limit_per_second: {who} is over {} requests a second (in bursts of \
                     up to {}, rate_limit_burst); try again in {} ms",
                    self.limit.per_second,
                    self.limit.burst,
                    wait.as_millis()
                ),
                retry_after: wait,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_bucket_of_burst_requests() {
        let limit = RateLimit {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::new(2).unwrap(),
        };
        let limiter = Limiter::new(limit, true);
        let caller = |name: &str| Caller {
            name: name.into(),
            role: crate::api::auth::Role::Read,
        };
        assert!(limiter.take(&caller("a"), None).is_ok());
        assert!(limiter.take(&caller("a"), None).is_ok());
        let err = limiter.take(&caller("a"), None).unwrap_err().message;
        assert!(
            err.starts_with("rate_limit_per_second: the key \"a\" is over 1 requests a second"),
            "{err}"
        );
        assert!(limiter.take(&caller("b"), None).is_ok());

        let by_address = Limiter::new(limit, false);
        let (one, two) = ("10.0.0.1".parse().ok(), "10.0.0.2".parse().ok());
        for _ in 0..2 {
            assert!(by_address.take(&Caller::anonymous(), one).is_ok());
        }
        let limited = by_address.take(&Caller::anonymous(), one).unwrap_err();
        assert!(limited.retry_after <= Duration::from_secs(1), "{limited:?}");
        let err = limited.message;
        assert!(err.contains("the address 10.0.0.1"), "{err}");
        assert!(by_address.take(&Caller::anonymous(), two).is_ok());
    }
}
