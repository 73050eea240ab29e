//! Native histograms built from observations, as a Prometheus client library fills them, and
//! Cloud Monitoring's exponential bucket of a value, computed from the API's definition.

use std::collections::BTreeMap;

use prometheus_wal::record::{CounterResetHint, FloatHistogram, Histogram, Span};

/// Observations of one native histogram, cumulative since the exporter started.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub count: u64,
    pub sum: f64,
    pub positive: BTreeMap<i32, u64>,
    pub negative: BTreeMap<i32, u64>,
}

/// The bucket of `|v|` at `schema`: the `i` with `base^(i-1) < |v| <= base^i`. Test values stay
/// away from bucket bounds, so the logarithm decides.
pub fn bucket_index(schema: i32, v: f64) -> i32 {
    (v.abs().log2() * f64::from(schema).exp2()).ceil() as i32
}

impl Observed {
    pub fn new(schema: i32, zero_threshold: f64) -> Observed {
        Observed {
            schema,
            zero_threshold,
            ..Observed::default()
        }
    }

    pub fn observe(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        if v.abs() <= self.zero_threshold {
            self.zero_count += 1;
        } else if v > 0.0 {
            *self
                .positive
                .entry(bucket_index(self.schema, v))
                .or_default() += 1;
        } else {
            *self
                .negative
                .entry(bucket_index(self.schema, v))
                .or_default() += 1;
        }
    }

    /// Lowers the resolution by one step, as a client library does when it has too many
    /// buckets.
    pub fn lower_schema(&mut self) {
        let lower = |m: &BTreeMap<i32, u64>| {
            let mut out = BTreeMap::new();
            for (i, c) in m {
                *out.entry((i - 1).div_euclid(2) + 1).or_default() += c;
            }
            out
        };
        self.positive = lower(&self.positive);
        self.negative = lower(&self.negative);
        self.schema -= 1;
    }

    /// Spans and counts as Prometheus encodes them: runs of consecutive indices, a gap of one
    /// empty bucket kept inside a span (as client libraries do), larger gaps starting a span.
    fn spans(m: &BTreeMap<i32, u64>) -> (Vec<Span>, Vec<u64>) {
        let mut spans: Vec<Span> = Vec::new();
        let mut counts = Vec::new();
        let mut next: Option<i32> = None;
        for (&i, &c) in m {
            match next {
                Some(n) if i == n => spans.last_mut().unwrap().length += 1,
                Some(n) if i == n + 1 => {
                    counts.push(0);
                    spans.last_mut().unwrap().length += 2;
                }
                Some(n) => spans.push(Span {
                    offset: i - n,
                    length: 1,
                }),
                None => spans.push(Span {
                    offset: i,
                    length: 1,
                }),
            }
            counts.push(c);
            next = Some(i + 1);
        }
        (spans, counts)
    }

    /// As an integer histogram record holds it (bucket counts as deltas).
    pub fn integer(&self, hint: CounterResetHint) -> Histogram {
        let deltas = |counts: Vec<u64>| {
            let mut previous = 0i64;
            counts
                .into_iter()
                .map(|c| {
                    let d = c as i64 - previous;
                    previous = c as i64;
                    d
                })
                .collect()
        };
        let (positive_spans, positive) = Observed::spans(&self.positive);
        let (negative_spans, negative) = Observed::spans(&self.negative);
        Histogram {
            counter_reset_hint: hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: self.sum,
            positive_spans,
            negative_spans,
            positive_deltas: deltas(positive),
            negative_deltas: deltas(negative),
            custom_values: Vec::new(),
        }
    }

    /// As a float histogram record holds it (absolute counts).
    pub fn float(&self, hint: CounterResetHint) -> FloatHistogram {
        let (positive_spans, positive) = Observed::spans(&self.positive);
        let (negative_spans, negative) = Observed::spans(&self.negative);
        FloatHistogram {
            counter_reset_hint: hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans,
            negative_spans,
            positive_buckets: positive.into_iter().map(|c| c as f64).collect(),
            negative_buckets: negative.into_iter().map(|c| c as f64).collect(),
            custom_values: Vec::new(),
        }
    }
}

/// Cloud Monitoring's bucket of `v` under exponential options (`google.api.Distribution`):
/// 0 (underflow) below `scale`, `k` for `[scale·growth^(k-1), scale·growth^k)`, and
/// `num_finite + 1` (overflow) above the last.
pub fn gcm_bucket(num_finite: i32, growth: f64, scale: f64, v: f64) -> usize {
    if v < scale {
        return 0;
    }
    let k = ((v.ln() - scale.ln()) / growth.ln()).floor() as i64 + 1;
    k.clamp(1, i64::from(num_finite) + 1) as usize
}
