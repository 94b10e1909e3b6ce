//! report::codec: the one place latency histograms are made and turned
//! into text: HdrHistogram's interchange form (V2, deflate, base64), as
//! interval logs hold it and HdrHistogram's tools read it. The run's
//! statistics, the report, the interval spool and `smtp-report merge`
//! all go through here.

use std::io;

use base64::Engine as _;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::{Deserializer, Serializer as _};
use hdrhistogram::Histogram;

/// Latencies are kept from 1 µs to one hour at 3 significant digits.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// An empty latency histogram (microseconds).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("3 digits are valid"))
}

/// HdrHistogram's interchange form: V2 with deflate, base64 (what
/// interval logs hold and HdrHistogram's tools read).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    let _ = V2DeflateSerializer::new().serialize(h, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of `encode_histogram`; None if it is not one.
pub fn decode_histogram(text: &str) -> Option<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    Deserializer::new()
        .deserialize(&mut io::Cursor::new(bytes))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram through its interchange form is the same histogram.
    #[test]
    fn histograms_round_trip() {
        let mut h = new_histogram();
        for us in (1..5000).map(|i| i * i % 100_003 + 1) {
            h.record(us).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        let empty = new_histogram();
        assert_eq!(
            decode_histogram(&encode_histogram(&empty)).unwrap().len(),
            0
        );
        assert!(decode_histogram("not base64!").is_none());
    }
}
