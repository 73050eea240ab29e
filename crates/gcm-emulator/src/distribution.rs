//! The rules a `google.api.Distribution` value must follow to be written.
//!
//! Owns the checks of one distribution in isolation: count, mean and deviation consistency,
//! bucket options, bucket counts against both, and exemplars (order and attachments). It must never know which series or request the
//! value came from; the caller names the field in its message.
//!
//! Bucket counts may be shorter than the number of buckets (the API documents that missing
//! trailing buckets count as zero) but never longer, and with bucket options their sum must equal
//! `count`.

use std::cmp::Ordering;

use gcm_api::api::Distribution;
use gcm_api::api::distribution::bucket_options::Options;

/// Most buckets a distribution may have, underflow and overflow included.
pub(crate) const MAX_BUCKETS: usize = 200;

/// Checks `d`, answering the detail of the first rule it breaks.
pub(crate) fn check(d: &Distribution) -> Result<(), String> {
    if d.count < 0 {
        return Err(format!(
            "Distribution count ({}) must not be negative.",
            d.count
        ));
    }
    if d.count == 0 && (d.mean != 0.0 || d.sum_of_squared_deviation != 0.0) {
        return Err(
            "Distribution with count 0 must have mean and sum_of_squared_deviation 0.".to_owned(),
        );
    }
    if d.count == 0 && d.range.is_some() {
        return Err("Distribution with count 0 must not have a range.".to_owned());
    }
    let Some(options) = &d.bucket_options else {
        if d.bucket_counts.is_empty() {
            return Ok(());
        }
        return Err("Distribution has |bucket_counts| but no bucket_options.".to_owned());
    };
    let buckets = bucket_count(options.options.as_ref())?;
    if buckets > MAX_BUCKETS {
        return Err(format!(
            "Distribution has {buckets} buckets, more than the {MAX_BUCKETS} allowed."
        ));
    }
    if d.bucket_counts.len() > buckets {
        return Err(format!(
            "Distribution value has {} |bucket_counts| fields, which is more than the {} buckets \
             allowed by the bucketing options.",
            d.bucket_counts.len(),
            buckets
        ));
    }
    if let Some(negative) = d.bucket_counts.iter().position(|&c| c < 0) {
        return Err(format!(
            "Distribution bucket_counts[{negative}] ({}) must not be negative.",
            d.bucket_counts[negative]
        ));
    }
    let sum: i128 = d.bucket_counts.iter().map(|&c| i128::from(c)).sum();
    if sum != i128::from(d.count) {
        return Err(format!(
            "Distribution count ({}) does not equal the sum of its |bucket_counts| ({sum}).",
            d.count
        ));
    }
    check_exemplars(d, buckets)
}

/// Type URLs of the exemplar attachments the API documents.
const SPAN_CONTEXT: &str = "type.googleapis.com/google.monitoring.v3.SpanContext";
const DROPPED_LABELS: &str = "type.googleapis.com/google.monitoring.v3.DroppedLabels";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// Exemplars: values finite and strictly increasing (`Distribution.exemplars`: "Must be in
/// increasing order of `value` field"; the API answers duplicates with the same error), at most
/// one attachment of each type ("enforced by the system"), attachments of the documented types
/// that decode, a `SpanContext` naming `projects/P/traces/<32 hex>/spans/<16 hex>`. The
/// emulator also allows no more exemplars than buckets, one per bucket being what Google's own
/// exporters send.
fn check_exemplars(d: &Distribution, buckets: usize) -> Result<(), String> {
    if d.exemplars.is_empty() {
        return Ok(());
    }
    let options = d.bucket_options.as_ref().and_then(|o| o.options.as_ref());
    let kind = match options {
        Some(Options::ExponentialBuckets(_)) => "exponential_buckets",
        Some(Options::LinearBuckets(_)) => "linear_buckets",
        _ => "explicit_buckets",
    };
    if d.exemplars.len() > buckets.max(1) {
        return Err(format!(
            "Distribution has {} exemplars, more than its {buckets} buckets.",
            d.exemplars.len()
        ));
    }
    if d.exemplars.iter().any(|e| !e.value.is_finite())
        || d.exemplars
            .windows(2)
            .any(|w| !less(w[0].value, w[1].value))
    {
        return Err(format!(
            "Distribution |bucket_options.{kind}| has out-of-order/duplicate exemplars."
        ));
    }
    for e in &d.exemplars {
        let mut seen: Vec<&str> = Vec::new();
        for a in &e.attachments {
            if seen.contains(&a.type_url.as_str()) {
                return Err(format!(
                    "Exemplar has more than one attachment of type {}.",
                    a.type_url
                ));
            }
            seen.push(&a.type_url);
            check_attachment(a)?;
        }
    }
    Ok(())
}

fn check_attachment(a: &prost_types::Any) -> Result<(), String> {
    use gcm_api::monitoring::{DroppedLabels, SpanContext};
    use prost::Message;
    let undecodable = || {
        format!(
            "Exemplar attachment of type {} cannot be decoded.",
            a.type_url
        )
    };
    match a.type_url.as_str() {
        SPAN_CONTEXT => {
            let span = SpanContext::decode(a.value.as_slice()).map_err(|_| undecodable())?;
            if !span_name_ok(&span.span_name) {
                return Err(format!(
                    "Exemplar SpanContext span_name {:?} is not \
                     projects/[PROJECT_ID]/traces/[TRACE_ID]/spans/[SPAN_ID].",
                    span.span_name
                ));
            }
        }
        DROPPED_LABELS => {
            DroppedLabels::decode(a.value.as_slice()).map_err(|_| undecodable())?;
        }
        STRING_VALUE => {
            String::decode(a.value.as_slice()).map_err(|_| undecodable())?;
        }
        other => {
            return Err(format!(
                "Exemplar attachment type {other} is not supported."
            ));
        }
    }
    Ok(())
}

/// `projects/<id>/traces/<32 hex digits>/spans/<16 hex digits>`.
fn span_name_ok(name: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = name.split('/').collect();
    matches!(
        parts.as_slice(),
        ["projects", project, "traces", trace, "spans", span]
            if !project.is_empty() && hex(trace, 32) && hex(span, 16)
    )
}

/// `a < b`, false when either is NaN.
fn less(a: f64, b: f64) -> bool {
    a.partial_cmp(&b) == Some(Ordering::Less)
}

/// The number of buckets (underflow and overflow included) the options define.
fn bucket_count(options: Option<&Options>) -> Result<usize, String> {
    match options {
        None => Err(
            "Distribution bucket_options must set explicit, linear or exponential \
                     buckets."
                .to_owned(),
        ),
        Some(Options::ExplicitBuckets(explicit)) => {
            if explicit.bounds.is_empty() {
                return Err(
                    "Distribution |explicit_buckets.bounds| does not have at least one entry."
                        .to_owned(),
                );
            }
            // NaN bounds compare as neither less nor greater, so they are refused too.
            if let Some(i) = explicit.bounds.windows(2).position(|w| !less(w[0], w[1])) {
                return Err(format!(
                    "Distribution |explicit_buckets.bounds| must be strictly increasing, but \
                     bounds[{}] ({}) is not less than bounds[{}] ({}).",
                    i,
                    explicit.bounds[i],
                    i + 1,
                    explicit.bounds[i + 1]
                ));
            }
            Ok(explicit.bounds.len() + 1)
        }
        Some(Options::LinearBuckets(linear)) => {
            if linear.num_finite_buckets <= 0 || !less(0.0, linear.width) {
                return Err(format!(
                    "Distribution linear_buckets need num_finite_buckets > 0 and width > 0, got \
                     {} and {}.",
                    linear.num_finite_buckets, linear.width
                ));
            }
            Ok(linear.num_finite_buckets as usize + 2)
        }
        Some(Options::ExponentialBuckets(exp)) => {
            if exp.num_finite_buckets <= 0 || !less(1.0, exp.growth_factor) || !less(0.0, exp.scale)
            {
                return Err(format!(
                    "Distribution exponential_buckets need num_finite_buckets > 0, growth_factor \
                     > 1 and scale > 0, got {}, {} and {}.",
                    exp.num_finite_buckets, exp.growth_factor, exp.scale
                ));
            }
            Ok(exp.num_finite_buckets as usize + 2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcm_api::api::distribution::BucketOptions;
    use gcm_api::api::distribution::bucket_options::{Explicit, Exponential, Linear};

    fn explicit(bounds: &[f64], counts: &[i64]) -> Distribution {
        Distribution {
            count: counts.iter().sum(),
            mean: 1.0,
            bucket_options: Some(BucketOptions {
                options: Some(Options::ExplicitBuckets(Explicit {
                    bounds: bounds.to_vec(),
                })),
            }),
            bucket_counts: counts.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn explicit_buckets_with_one_more_count_than_bounds_pass() {
        assert_eq!(check(&explicit(&[1.0, 2.0], &[1, 2, 3])), Ok(()));
    }

    #[test]
    fn fewer_counts_than_buckets_pass_as_trailing_zeros() {
        assert_eq!(check(&explicit(&[1.0, 2.0], &[1, 2])), Ok(()));
    }

    #[test]
    fn more_counts_than_buckets_fail() {
        let err = check(&explicit(&[1.0], &[1, 2, 3])).unwrap_err();
        assert!(
            err.contains("3 |bucket_counts|") && err.contains("the 2 buckets"),
            "{err}"
        );
    }

    #[test]
    fn empty_bounds_fail() {
        let err = check(&explicit(&[], &[4])).unwrap_err();
        assert!(err.contains("does not have at least one entry"), "{err}");
    }

    #[test]
    fn equal_or_decreasing_or_nan_bounds_fail() {
        for bounds in [[1.0, 1.0], [2.0, 1.0], [f64::NAN, 1.0]] {
            assert!(check(&explicit(&bounds, &[1, 1, 1])).is_err(), "{bounds:?}");
        }
    }

    #[test]
    fn count_must_equal_the_sum_of_bucket_counts() {
        let mut d = explicit(&[1.0], &[1, 2]);
        d.count = 4;
        assert!(check(&d).unwrap_err().contains("does not equal the sum"));
    }

    #[test]
    fn zero_count_needs_zero_mean_and_no_range() {
        let d = Distribution {
            count: 0,
            mean: 0.5,
            ..Default::default()
        };
        assert!(check(&d).is_err());
        let d = Distribution {
            count: 0,
            ..Default::default()
        };
        assert_eq!(check(&d), Ok(()));
    }

    #[test]
    fn counts_without_options_fail() {
        let d = Distribution {
            count: 1,
            mean: 1.0,
            bucket_counts: vec![1],
            ..Default::default()
        };
        assert!(check(&d).is_err());
    }

    fn with_exemplars(values: &[f64], attachments: Vec<prost_types::Any>) -> Distribution {
        use gcm_api::api::distribution::Exemplar;
        let mut d = explicit(&[1.0, 2.0], &[1, 2, 3]);
        d.exemplars = values
            .iter()
            .map(|v| Exemplar {
                value: *v,
                timestamp: None,
                attachments: attachments.clone(),
            })
            .collect();
        d
    }

    fn span(name: &str) -> prost_types::Any {
        use prost::Message;
        prost_types::Any {
            type_url: SPAN_CONTEXT.into(),
            value: gcm_api::monitoring::SpanContext {
                span_name: name.into(),
            }
            .encode_to_vec(),
        }
    }

    #[test]
    fn exemplars_are_increasing_with_one_attachment_of_each_known_type() {
        let good = "projects/p/traces/4bf92f3577b34da6a3ce929d0e0e4736/spans/00f067aa0ba902b7";
        assert_eq!(
            check(&with_exemplars(&[0.5, 1.5, 3.0], vec![span(good)])),
            Ok(())
        );
        let err = check(&with_exemplars(&[1.5, 0.5], vec![])).unwrap_err();
        assert!(err.contains("out-of-order/duplicate exemplars"), "{err}");
        assert!(check(&with_exemplars(&[0.5, 0.5], vec![])).is_err());
        assert!(check(&with_exemplars(&[f64::NAN], vec![])).is_err());
        assert!(check(&with_exemplars(&[0.5, 1.0, 2.0, 3.0], vec![])).is_err());
        assert!(check(&with_exemplars(&[0.5], vec![span(good), span(good)])).is_err());
        assert!(
            check(&with_exemplars(
                &[0.5],
                vec![span("projects/p/traces/x/spans/y")]
            ))
            .is_err()
        );
        let other = prost_types::Any {
            type_url: "type.googleapis.com/google.protobuf.Duration".into(),
            value: Vec::new(),
        };
        assert!(check(&with_exemplars(&[0.5], vec![other])).is_err());
    }

    #[test]
    fn linear_and_exponential_options_are_checked() {
        let linear = |n, width| Distribution {
            count: 1,
            mean: 1.0,
            bucket_options: Some(BucketOptions {
                options: Some(Options::LinearBuckets(Linear {
                    num_finite_buckets: n,
                    width,
                    offset: 0.0,
                })),
            }),
            bucket_counts: vec![0, 1, 0],
            ..Default::default()
        };
        assert_eq!(check(&linear(1, 1.0)), Ok(()));
        assert!(check(&linear(0, 1.0)).is_err());
        assert!(check(&linear(1, 0.0)).is_err());
        let exp = |growth_factor| Distribution {
            count: 1,
            mean: 1.0,
            bucket_options: Some(BucketOptions {
                options: Some(Options::ExponentialBuckets(Exponential {
                    num_finite_buckets: 2,
                    growth_factor,
                    scale: 1.0,
                })),
            }),
            bucket_counts: vec![1],
            ..Default::default()
        };
        assert_eq!(check(&exp(2.0)), Ok(()));
        assert!(check(&exp(1.0)).is_err());
    }
}
