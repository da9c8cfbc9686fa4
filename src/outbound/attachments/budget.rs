//! What the attachments of one request may add up to: the sizes their servers declare and
//! the bytes actually received, each held to one total shared by all of the request's
//! downloads and data URLs.

use std::sync::atomic::{AtomicU64, Ordering};

/// A request's attachment budget, shared by its downloads (cheap to share behind an `Arc`).
#[derive(Debug)]
pub struct RequestBudget {
    max_total: u64,
    declared: AtomicU64,
    received: AtomicU64,
}

/// The budget is spent: the total the request may not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// The request's total, in bytes.
    pub max_total: u64,
}

impl RequestBudget {
    /// A budget of `max_total` bytes, nothing declared or received yet.
    pub fn new(max_total: u64) -> Self {
        Self {
            max_total,
            declared: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Adds a file's declared length to the lengths declared so far. Refused once their sum
    /// passes the total: the bytes would, so none of them need be read.
    ///
    /// # Errors
    /// [`Exceeded`] when the sum passes the total (and stays past it).
    pub fn declare(&self, length: u64) -> Result<(), Exceeded> {
        self.spend(&self.declared, length)
    }

    /// Counts `length` bytes received. Refused once the bytes received pass the total; every
    /// later piece, of any of the request's files, is refused too, so that all its downloads
    /// stop at once.
    ///
    /// # Errors
    /// [`Exceeded`] when the bytes received pass the total.
    pub fn receive(&self, length: u64) -> Result<(), Exceeded> {
        self.spend(&self.received, length)
    }

    fn spend(&self, counter: &AtomicU64, length: u64) -> Result<(), Exceeded> {
        let before = counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |spent| {
                Some(spent.saturating_add(length))
            })
            .unwrap_or_else(|spent| spent);
        if before.saturating_add(length) > self.max_total {
            Err(Exceeded {
                max_total: self.max_total,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_up_to_the_total_are_received_and_one_more_is_refused() {
        let budget = RequestBudget::new(100);
        assert_eq!(budget.receive(60), Ok(()));
        assert_eq!(budget.receive(40), Ok(()));
        assert_eq!(budget.receive(1), Err(Exceeded { max_total: 100 }));
    }

    #[test]
    fn once_past_the_total_every_later_piece_is_refused_even_an_empty_one() {
        let budget = RequestBudget::new(100);
        assert!(budget.receive(150).is_err());
        assert!(budget.receive(1).is_err());
        assert!(budget.receive(0).is_err());
    }

    #[test]
    fn declared_lengths_are_summed_apart_from_the_bytes_received() {
        let budget = RequestBudget::new(100);
        assert_eq!(budget.declare(60), Ok(()));
        assert_eq!(budget.receive(60), Ok(()));
        assert_eq!(budget.declare(40), Ok(()));
        assert_eq!(budget.declare(1), Err(Exceeded { max_total: 100 }));
        assert_eq!(
            budget.receive(40),
            Ok(()),
            "the bytes received are counted on their own"
        );
    }

    #[test]
    fn a_huge_declared_length_saturates_instead_of_wrapping() {
        let budget = RequestBudget::new(100);
        assert!(budget.declare(u64::MAX).is_err());
        assert!(budget.declare(u64::MAX).is_err());
        assert!(budget.declare(1).is_err());
    }

    #[test]
    fn downloads_on_many_threads_share_one_total() {
        let budget = std::sync::Arc::new(RequestBudget::new(1_000));
        let refused: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    let budget = std::sync::Arc::clone(&budget);
                    scope.spawn(move || (0..250).filter(|_| budget.receive(1).is_err()).count())
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().unwrap_or_default())
                .sum()
        });
        assert_eq!(refused, 8 * 250 - 1_000, "exactly the bytes past the total are refused");
    }
}
