//! report::hlog: the --hlog file, an HdrHistogram interval log of
//! transaction latency written one interval at a time as the run goes.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

/// An HdrHistogram interval log (the format HistogramLogProcessor and
/// HdrHistogram plotters read), written one interval at a time.
pub struct HistogramLog<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
    start: SystemTime,
}

impl<W: Write> HistogramLog<W> {
    /// Writes the header (start time, legend).
    pub fn begin(mut out: W, start: SystemTime) -> io::Result<Self> {
        let mut serializer = V2DeflateSerializer::new();
        let mut header = Vec::new();
        IntervalLogWriterBuilder::new()
            .add_comment("smtp-source transaction latency, microseconds")
            .with_start_time(start)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut header, &mut serializer)
            .map_err(io::Error::other)?;
        out.write_all(&header)?;
        out.flush()?;
        Ok(HistogramLog {
            out,
            serializer,
            start,
        })
    }

    /// Appends one interval that began at `from` and lasted `length`.
    pub fn interval(
        &mut self,
        h: &Histogram<u64>,
        from: SystemTime,
        length: Duration,
    ) -> io::Result<()> {
        let mut line = Vec::new();
        // The builder writes no header lines when given none to write.
        let mut w = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut line, &mut self.serializer)
            .map_err(io::Error::other)?;
        let offset = from.duration_since(self.start).unwrap_or_default();
        w.write_histogram(h, offset, length, None)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        drop(w);
        self.out.write_all(&line)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::codec::new_histogram;

    #[test]
    fn interval_log_has_header_and_lines() {
        let mut out = Vec::new();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut log = HistogramLog::begin(&mut out, start).unwrap();
        let mut h = new_histogram();
        h.record(1500).unwrap();
        log.interval(
            &h,
            start + Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("#[StartTime: 100"), "{text}");
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("1.000,1.000,1.500,HISTF"), "{last}");
    }
}
