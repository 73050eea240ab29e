//! Series selectors: which Prometheus series are exported (`--include`, the deprecated
//! `--filter`) and which feed an aggregated counter (`aggregated_counters` in the config file).
//!
//! Owns parsing PromQL series selectors (`metric{a="b"}`, `{__name__=~"x.+",job="k"}`) with the
//! `promql-parser` crate, the checks the Prometheus parser makes that the crate leaves to its
//! caller, and matching a label set against them. It must never look at samples or values: a
//! decision depends on the series' labels alone (before renames, with `__name__`, `job` and
//! `instance`), so it is made once per series.

use std::fmt;

use prometheus_wal::Label;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, parse};

/// The label holding the metric name.
const METRIC_NAME: &str = "__name__";

/// One PromQL series selector: every matcher must match (a missing label is the empty string).
#[derive(Debug, Clone)]
pub struct Selector {
    /// The selector as written.
    text: String,
    /// Matchers, with a bare metric name turned into `__name__="…"`.
    matchers: Vec<Matcher>,
}

impl Selector {
    /// Parses one series selector, refusing what Prometheus refuses in a series selector and
    /// what makes no sense for a filter (range, `offset` and `@` modifiers, functions).
    pub fn parse(text: &str) -> Result<Selector, String> {
        if text.trim().is_empty() {
            return Err("empty selector".into());
        }
        let expr = parse(text)?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(format!(
                "{text:?} is not a series selector such as metric{{label=\"value\"}}"
            ));
        };
        if vs.offset.is_some() {
            return Err(format!(
                "{text:?}: offset modifiers are not allowed in a filter"
            ));
        }
        if vs.at.is_some() {
            return Err(format!("{text:?}: @ modifiers are not allowed in a filter"));
        }
        if !vs.matchers.or_matchers.is_empty() {
            return Err(format!(
                "{text:?}: `or` inside a selector is not supported; give one selector per flag \
                 or filter entry instead"
            ));
        }
        let mut matchers = vs.matchers.matchers;
        // `foo{a="b"}` carries the name beside the matchers; `{__name__="foo",a="b"}` inside
        // them. Both become the same matcher list.
        if let Some(name) = vs.name {
            if matchers.iter().any(|m| m.name == METRIC_NAME) {
                return Err(format!("{text:?}: the metric name is given twice"));
            }
            matchers.push(Matcher::new(MatchOp::Equal, METRIC_NAME, &name));
        }
        if matchers.iter().all(|m| m.is_match("")) {
            return Err(format!(
                "{text:?}: a selector needs at least one matcher that does not match the empty \
                 string"
            ));
        }
        matchers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Selector {
            text: text.to_string(),
            matchers,
        })
    }

    /// Whether a sorted label set matches every matcher.
    pub fn matches(&self, labels: &[Label]) -> bool {
        self.matchers
            .iter()
            .all(|m| m.is_match(value(labels, &m.name)))
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The value of label `name` in a sorted label set, empty when absent.
fn value<'a>(labels: &'a [Label], name: &str) -> &'a str {
    labels
        .binary_search_by(|l| l.name.as_str().cmp(name))
        .map(|i| labels[i].value.as_str())
        .unwrap_or("")
}

/// A selector flag that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// `--include` or `--filter`.
    pub flag: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Which series are exported: those matching any of the filter sets, or every series when none
/// is configured.
#[derive(Debug, Clone, Default)]
pub struct SeriesFilter {
    sets: Vec<Selector>,
}

impl SeriesFilter {
    /// The filter sets of the original's flags: when `--filter` is given, all its matchers joined
    /// into one selector `{f1,f2,…}` (AND-ed), then one selector per `--include` (OR-ed with the
    /// rest).
    pub fn from_flags(include: &[String], filter: &[String]) -> Result<SeriesFilter, FilterError> {
        let mut sets = Vec::with_capacity(include.len() + 1);
        if !filter.is_empty() {
            let joined = format!("{{{}}}", filter.join(","));
            let selector = Selector::parse(&joined).map_err(|message| FilterError {
                flag: "--filter",
                message,
            })?;
            sets.push(selector);
        }
        for text in include {
            let selector = Selector::parse(text).map_err(|message| FilterError {
                flag: "--include",
                message,
            })?;
            sets.push(selector);
        }
        Ok(SeriesFilter { sets })
    }

    /// A filter from already parsed selectors (OR-ed).
    pub fn new(sets: Vec<Selector>) -> SeriesFilter {
        SeriesFilter { sets }
    }

    /// Whether a series with these sorted labels is exported.
    pub fn matches(&self, labels: &[Label]) -> bool {
        self.sets.is_empty() || self.sets.iter().any(|s| s.matches(labels))
    }

    /// Whether every series is exported.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The filter sets, in order.
    pub fn selectors(&self) -> &[Selector] {
        &self.sets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        let mut v: Vec<Label> = pairs
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect();
        v.sort();
        v
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bare_name_and_name_matcher_select_the_same_series() {
        let a = Selector::parse(r#"up{job="node"}"#).unwrap();
        let b = Selector::parse(r#"{__name__="up",job="node"}"#).unwrap();
        let up_node = labels(&[("__name__", "up"), ("job", "node")]);
        let up_prom = labels(&[("__name__", "up"), ("job", "prom")]);
        let other = labels(&[("__name__", "upx"), ("job", "node")]);
        for s in [&a, &b] {
            assert!(s.matches(&up_node));
            assert!(!s.matches(&up_prom));
            assert!(!s.matches(&other));
        }
        assert!(Selector::parse("up").unwrap().matches(&up_prom));
    }

    #[test]
    fn regex_matchers_are_anchored() {
        let s = Selector::parse(r#"{__name__=~"go_.+"}"#).unwrap();
        assert!(s.matches(&labels(&[("__name__", "go_goroutines")])));
        assert!(!s.matches(&labels(&[("__name__", "x_go_goroutines")])));
        let s = Selector::parse(r#"{job!~"node|prom", __name__="up"}"#).unwrap();
        assert!(s.matches(&labels(&[("__name__", "up"), ("job", "other")])));
        assert!(!s.matches(&labels(&[("__name__", "up"), ("job", "node")])));
    }

    #[test]
    fn a_missing_label_matches_as_the_empty_string() {
        let s = Selector::parse(r#"up{env=""}"#).unwrap();
        assert!(s.matches(&labels(&[("__name__", "up")])));
        assert!(!s.matches(&labels(&[("__name__", "up"), ("env", "x")])));
        let s = Selector::parse(r#"up{env!="prod"}"#).unwrap();
        assert!(s.matches(&labels(&[("__name__", "up")])));
    }

    #[test]
    fn selectors_that_match_only_empty_values_are_refused() {
        for bad in [r#"{job=~".*"}"#, r#"{job=""}"#, r#"{job!="x"}"#, "{}"] {
            assert!(Selector::parse(bad).is_err(), "{bad} was accepted");
        }
        // Matches nothing, but is a valid selector for Prometheus too.
        assert!(Selector::parse(r#"{job!~".*"}"#).is_ok());
    }

    #[test]
    fn invalid_selectors_are_refused() {
        for bad in [
            "",
            "  ",
            r#"{a-b="c"}"#,
            "{job=node}",
            r#"{job!=="node"}"#,
            r#"up offset 5m"#,
            r#"up @ 100"#,
            r#"up[5m]"#,
            r#"rate(up[5m])"#,
            r#"up{__name__="down"}"#,
            r#"{job="a" or job="b"}"#,
            "1",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn no_flags_export_everything() {
        let f = SeriesFilter::from_flags(&[], &[]).unwrap();
        assert!(f.is_empty());
        assert!(f.matches(&labels(&[("__name__", "anything")])));
    }

    #[test]
    fn include_flags_are_ored() {
        let f = SeriesFilter::from_flags(&strings(&["up", r#"{job="node"}"#]), &[]).unwrap();
        assert!(f.matches(&labels(&[("__name__", "up"), ("job", "prom")])));
        assert!(f.matches(&labels(&[("__name__", "x"), ("job", "node")])));
        assert!(!f.matches(&labels(&[("__name__", "x"), ("job", "prom")])));
    }

    #[test]
    fn filter_flags_are_anded_into_one_selector() {
        let f = SeriesFilter::from_flags(&[], &strings(&[r#"job="node""#, r#"__name__=~"go_.*""#]))
            .unwrap();
        assert_eq!(f.selectors().len(), 1);
        assert!(f.matches(&labels(&[("__name__", "go_x"), ("job", "node")])));
        assert!(!f.matches(&labels(&[("__name__", "go_x"), ("job", "prom")])));
        assert!(!f.matches(&labels(&[("__name__", "up"), ("job", "node")])));
        // With --include too: the joined --filter selector is one more alternative.
        let f = SeriesFilter::from_flags(&strings(&["up"]), &strings(&[r#"job="node""#])).unwrap();
        assert_eq!(f.selectors().len(), 2);
        assert!(f.matches(&labels(&[("__name__", "up"), ("job", "prom")])));
        assert!(f.matches(&labels(&[("__name__", "x"), ("job", "node")])));
    }

    #[test]
    fn parse_errors_name_the_flag() {
        let err = SeriesFilter::from_flags(&strings(&["{a-b=\"c\"}"]), &[]).unwrap_err();
        assert_eq!(err.flag, "--include");
        let err = SeriesFilter::from_flags(&[], &strings(&["job=node"])).unwrap_err();
        assert_eq!(err.flag, "--filter");
        let err =
            SeriesFilter::from_flags(&strings(&["up"]), &strings(&["job!==\"x\""])).unwrap_err();
        assert_eq!(err.flag, "--filter");
    }
}
