//! Summary statistics of repeated measurements, and their ratio to the best peer.

use serde_json::{json, Value};

/// min / median / mean / p90 of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Smallest value.
    pub min: f64,
    /// Middle value.
    pub median: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// Number of values.
    pub n: usize,
}

impl Summary {
    /// Summarises `values`; an empty sample gives zeros.
    pub fn of(values: &[f64]) -> Summary {
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        if n == 0 {
            return Summary {
                min: 0.0,
                median: 0.0,
                mean: 0.0,
                p90: 0.0,
                n: 0,
            };
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let rank = ((n as f64) * 0.9).ceil() as usize;
        Summary {
            min: v[0],
            median,
            mean: v.iter().sum::<f64>() / n as f64,
            p90: v[rank.clamp(1, n) - 1],
            n,
        }
    }

    /// The summary as JSON.
    pub fn json(&self) -> Value {
        json!({"min": self.min, "median": self.median, "mean": self.mean, "p90": self.p90, "n": self.n})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_small_samples() {
        let s = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.p90), (1.0, 2.0, 3.0));
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.median, 2.5);
        assert_eq!(s.mean, 2.5);
        let s = Summary::of(&[5.0]);
        assert_eq!((s.min, s.median, s.p90, s.n), (5.0, 5.0, 5.0, 1));
    }
}
