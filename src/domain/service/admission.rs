//! Back-pressure: the [`Admission`] gate bounds the upstream work running at once and the
//! requests queued for it; one request past the queue is turned away at once, so a burst
//! cannot pile up memory and sockets without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::metrics::instruments;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    /// The queue was full when the request arrived.
    #[error("the queue of waiting requests is full")]
    QueueFull,
    /// No slot freed up within the wait.
    #[error("no slot freed up in time")]
    WaitedTooLong,
}

/// The gate: `max_in_flight` slots, and at most `max_queued` requests waiting for one.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    max_queued: usize,
    queued: AtomicUsize,
}

impl Admission {
    /// A gate with `max_in_flight` slots (at least 1) and room for `max_queued` waiters.
    pub fn new(max_in_flight: usize, max_queued: usize) -> Arc<Self> {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            max_queued,
            queued: AtomicUsize::new(0),
        })
    }

    /// Takes a slot: at once when one is free, else by queueing (when the queue has room)
    /// for at most `wait`.
    ///
    /// # Errors
    /// [`Overloaded::QueueFull`] when the queue is full, [`Overloaded::WaitedTooLong`] when
    /// no slot freed up within `wait`.
    pub async fn admit(&self, wait: Duration) -> Result<AdmissionPermit, Overloaded> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(self.admitted(permit));
        }
        let place = self.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
            (queued < self.max_queued).then_some(queued + 1)
        });
        if place.is_err() {
            instruments().overloaded.add(1, &[]);
            return Err(Overloaded::QueueFull);
        }
        let waiting = QueuePlace { gate: self };
        self.record();
        let permit = tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned()).await;
        drop(waiting);
        match permit {
            Ok(Ok(permit)) => Ok(self.admitted(permit)),
            // The semaphore is never closed; treat it as a timeout anyway.
            Ok(Err(_)) | Err(_) => {
                instruments().overloaded.add(1, &[]);
                Err(Overloaded::WaitedTooLong)
            }
        }
    }

    fn admitted(&self, permit: OwnedSemaphorePermit) -> AdmissionPermit {
        self.record();
        AdmissionPermit {
            permit: Some(permit),
            slots: Arc::clone(&self.slots),
            max_in_flight: self.max_in_flight,
        }
    }

    /// Work items running now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.slots.available_permits()
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn record(&self) {
        instruments().in_flight.record(self.in_flight() as u64, &[]);
        instruments().queued.record(self.queued() as u64, &[]);
    }
}

/// A place in the queue, given back however the wait ends (the request may be dropped).
struct QueuePlace<'a> {
    gate: &'a Admission,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.gate.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One slot of the gate, until dropped.
#[derive(Debug)]
pub struct AdmissionPermit {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
    max_in_flight: usize,
}

impl Drop for AdmissionPermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        let in_flight = self.max_in_flight - self.slots.available_permits();
        instruments().in_flight.record(in_flight as u64, &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn requests_past_the_slots_queue_and_past_the_queue_are_refused() {
        let gate = Admission::new(1, 1);
        let first = gate.admit(LONG).await.expect("a free slot");
        assert_eq!(gate.in_flight(), 1);
        let queued = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { gate.admit(LONG).await.map(|_| ()) })
        };
        let deadline = tokio::time::Instant::now() + LONG;
        while gate.queued() == 0 && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.queued(), 1);
        assert_eq!(gate.admit(LONG).await.map(|_| ()), Err(Overloaded::QueueFull));
        drop(first);
        assert!(matches!(queued.await, Ok(Ok(()))), "the waiter got the freed slot");
        assert_eq!(gate.queued(), 0);
        assert_eq!(
            gate.in_flight(),
            0,
            "the waiter's slot was given back when it dropped it"
        );
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_the_wait_and_leaves_the_queue() {
        let gate = Admission::new(1, 4);
        let _held = gate.admit(LONG).await.expect("a free slot");
        assert_eq!(
            gate.admit(Duration::from_millis(20)).await.map(|_| ()),
            Err(Overloaded::WaitedTooLong)
        );
        assert_eq!(gate.queued(), 0);
    }

    #[tokio::test]
    async fn a_zero_queue_refuses_at_once_when_the_slots_are_taken() {
        let gate = Admission::new(2, 0);
        let _a = gate.admit(LONG).await.expect("slot one");
        let _b = gate.admit(LONG).await.expect("slot two");
        assert_eq!(gate.admit(LONG).await.map(|_| ()), Err(Overloaded::QueueFull));
    }
}
