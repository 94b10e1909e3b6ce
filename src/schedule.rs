//! schedule: the --rate arrival times. Pure: no clock is read here; the
//! dispatcher asks for the next start and sleeps until it.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

use crate::draw;
use crate::plan::Arrival;

/// Start times at `rate` per second from `start`.
pub struct Schedule {
    start: Instant,
    /// Seconds from `start` of the next arrival.
    offset: f64,
    gap: f64,
    poisson: Option<StdRng>,
}

impl Schedule {
    /// Poisson gaps are drawn from the run seed's arrival stream.
    pub fn new(
        start: Instant,
        rate: f64,
        arrival: Arrival,
        seed: u64,
    ) -> Self {
        let stream = || draw::stream(seed, draw::Purpose::Arrival, 0);
        Schedule {
            start,
            offset: 0.0,
            gap: 1.0 / rate,
            poisson: (arrival == Arrival::Poisson).then(stream),
        }
    }

    /// The next arrival time. Uniform arrivals are evenly spaced;
    /// Poisson arrivals have exponential gaps with the same mean.
    pub fn next_start(&mut self) -> Instant {
        let at = self.start + Duration::from_secs_f64(self.offset);
        let gap = match &mut self.poisson {
            None => self.gap,
            Some(rng) => {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                -u.ln() * self.gap
            }
        };
        self.offset += gap;
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_arrivals_are_evenly_spaced() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 4.0, Arrival::Uniform, 0);
        let at: Vec<_> = (0..5).map(|_| s.next_start() - t0).collect();
        assert_eq!(at[0], Duration::ZERO);
        assert_eq!(at[4], Duration::from_secs(1));
    }

    #[test]
    fn poisson_gaps_have_the_right_mean() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100.0, Arrival::Poisson, 7);
        let n = 20_000;
        let mut last = t0;
        for _ in 0..n {
            last = s.next_start();
        }
        let mean = (last - t0).as_secs_f64() / f64::from(n - 1);
        assert!((mean - 0.01).abs() < 0.0005, "mean gap {mean}");
    }

    #[test]
    fn poisson_arrivals_repeat_with_the_seed() {
        let t0 = Instant::now();
        let starts = |seed| {
            let mut s = Schedule::new(t0, 10.0, Arrival::Poisson, seed);
            (0..20).map(|_| s.next_start()).collect::<Vec<_>>()
        };
        assert_eq!(starts(3), starts(3));
        assert_ne!(starts(3), starts(4));
    }
}
