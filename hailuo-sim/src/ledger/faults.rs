//! The fault plan: the faults queued for the next chat requests, the rate at which others are
//! drawn, the DELETEs and OSS PUTs still to fail, and what was played.

use std::collections::{BTreeMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fault::Fault;
use crate::refusal::{Refusal, RefusedCall};

/// What is to go wrong, and what went wrong.
pub(crate) struct FaultPlan {
    /// Faults for the next chat requests.
    pub queued: VecDeque<Fault>,
    /// The fraction of other chat requests that suffer a fault drawn from [`Fault::MIX`].
    pub rate: f64,
    /// The draws of `rate`.
    rng: StdRng,
    /// Faults played, by kind.
    pub played: BTreeMap<String, usize>,
    /// DELETEs still to fail with HTTP 500.
    pub failing_deletes: usize,
    /// OSS PUTs still to fail with HTTP 500.
    pub failing_uploads: usize,
    /// Refusals for the next requests of their calls.
    pub refusals: VecDeque<Refusal>,
}

impl FaultPlan {
    /// A plan drawing at `rate` (clamped to 0..=1), seeded by `seed` (random when `None`).
    pub fn new(rate: f64, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Self {
            queued: VecDeque::new(),
            rate: rate.clamp(0.0, 1.0),
            rng,
            played: BTreeMap::new(),
            failing_deletes: 0,
            failing_uploads: 0,
            refusals: VecDeque::new(),
        }
    }

    /// The fault the next chat request suffers: the first queued one, else one drawn at the
    /// rate; counted by kind.
    pub fn next_chat_fault(&mut self) -> Option<Fault> {
        let fault = self.queued.pop_front().or_else(|| {
            if self.rate <= 0.0 || !self.rng.random_bool(self.rate.min(1.0)) {
                return None;
            }
            Fault::MIX.get(self.rng.random_range(0..Fault::MIX.len())).cloned()
        })?;
        *self.played.entry(fault.kind().to_owned()).or_default() += 1;
        Some(fault)
    }

    /// The refusal this request of `call` gets, if one is queued for it (taken off).
    pub fn take_refusal(&mut self, call: RefusedCall) -> Option<Refusal> {
        let index = self.refusals.iter().position(|refusal| refusal.call() == call)?;
        self.refusals.remove(index)
    }

    /// Whether this DELETE is one to fail (counting it off).
    pub fn take_failing_delete(&mut self) -> bool {
        take_one(&mut self.failing_deletes)
    }

    /// Whether this OSS PUT is one to fail (counting it off).
    pub fn take_failing_upload(&mut self) -> bool {
        take_one(&mut self.failing_uploads)
    }
}

/// Counts one off `left`; whether there was one.
fn take_one(left: &mut usize) -> bool {
    if *left == 0 {
        return false;
    }
    *left -= 1;
    true
}
