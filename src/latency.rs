//! Epoch latency, observed (never read by the dataflow, never in results): for
//! each epoch a sink writes, the time from the moment the last source
//! partition moved past that epoch to the moment the sink finished it.
//!
//! Memory is constant in the length of the run: epoch-close events are kept in
//! a bounded ring, and samples go into a fixed log-scale histogram.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Close events kept for lookups by lagging writers.
const RING: usize = 4096;
/// Histogram buckets grow by 2%: from 1 µs to about 1000 s.
const GROWTH: f64 = 1.02;
const BUCKETS: usize = 1048;

/// Latency percentiles from a fixed log-scale histogram (2% resolution).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    /// The samples' sum, in microseconds.
    sum_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_us: 0,
        }
    }
}

impl Histogram {
    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = if us <= 1.0 {
            0
        } else {
            (us.ln() / GROWTH.ln()).ceil() as usize
        };
        self.counts[i.min(BUCKETS - 1)] += 1;
        self.total += 1;
        self.sum_us = self
            .sum_us
            .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The samples' sum, in seconds.
    #[allow(clippy::cast_precision_loss)]
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// How many samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1) in milliseconds (the upper bound of its
    /// bucket), or None without samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((self.total as f64 * q.clamp(0.0, 1.0)).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
                return Some(GROWTH.powi(i as i32) / 1000.0);
            }
        }
        None
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Every source partition's current epoch (`u64::MAX` once ended).
    parts: BTreeMap<(usize, u32), u64>,
    /// The minimum of `parts`: every epoch below it is closed.
    min: u64,
    /// (when, new minimum), in order: epochs below `new minimum` closed then.
    closes: VecDeque<(Instant, u64)>,
    hist: Histogram,
}

/// The epoch clock of one process.
#[derive(Debug, Default)]
pub struct EpochClock {
    inner: Mutex<Inner>,
}

impl EpochClock {
    /// A clock for these (source, partition) pairs, all at epoch 0.
    pub fn new(partitions: impl IntoIterator<Item = (usize, u32)>) -> EpochClock {
        let parts: BTreeMap<(usize, u32), u64> = partitions.into_iter().map(|p| (p, 0)).collect();
        EpochClock {
            inner: Mutex::new(Inner {
                parts,
                ..Inner::default()
            }),
        }
    }

    /// A partition moved to `epoch` (`u64::MAX`: it ended).
    pub fn advanced(&self, source: usize, part: u32, epoch: u64) {
        let Ok(mut c) = self.inner.lock() else { return };
        c.parts.insert((source, part), epoch);
        let min = c.parts.values().copied().min().unwrap_or(u64::MAX);
        if min > c.min {
            c.min = min;
            c.closes.push_back((Instant::now(), min));
            if c.closes.len() > RING {
                c.closes.pop_front();
            }
        }
    }

    /// A sink finished writing `epoch`; returns its latency, if known.
    pub fn written(&self, epoch: u64) -> Option<Duration> {
        let now = Instant::now();
        let Ok(mut c) = self.inner.lock() else {
            return None;
        };
        // The first close event that moved the minimum past `epoch`.
        let i = c.closes.partition_point(|(_, m)| *m <= epoch);
        let &(closed, _) = c.closes.get(i)?;
        let d = now.saturating_duration_since(closed);
        c.hist.record(d);
        Some(d)
    }

    /// The latencies recorded so far.
    pub fn histogram(&self) -> Histogram {
        self.inner
            .lock()
            .map(|c| c.hist.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5).expect("samples");
        let p99 = h.quantile_ms(0.99).expect("samples");
        assert!((50.0..=51.0).contains(&p50), "{p50}");
        assert!((99.0..=101.0).contains(&p99), "{p99}");
        assert_eq!(h.count(), 100);
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
    }

    #[test]
    fn an_epoch_closes_when_its_last_partition_passes_it() {
        let c = EpochClock::new([(0, 0), (0, 1)]);
        c.advanced(0, 0, 5);
        c.written(0); // no partition-1 progress yet: epoch 0 is not closed
        assert_eq!(c.histogram().count(), 0);
        c.advanced(0, 1, 3);
        c.written(0);
        c.written(2);
        c.written(3); // still open: partition 1 is at 3
        assert_eq!(c.histogram().count(), 2);
        c.advanced(0, 1, u64::MAX);
        c.written(4);
        assert_eq!(c.histogram().count(), 3);
    }
}
