//! The subset of Cloud Monitoring's filter language the emulator understands.
//!
//! Owns parsing and matching of filters made of clauses joined by `AND`, each clause
//! `<selector> = "<value>"` or `<selector> = starts_with("<prefix>")`, with selectors
//! `metric.type`, `metric.labels.<key>` (or `metric.label.<key>`), `resource.type` and
//! `resource.labels.<key>` (or `resource.label.<key>`). It must never accept what it does not
//! understand (`OR`, `NOT`, `!=`, regular expressions, other selectors): those are refused with a
//! message, so a test never believes a filter worked when it was ignored.

use std::collections::HashMap;

/// A parsed filter; the empty filter matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Filter {
    clauses: Vec<Clause>,
}

#[derive(Clone, Debug, PartialEq)]
struct Clause {
    selector: Selector,
    matcher: Matcher,
}

#[derive(Clone, Debug, PartialEq)]
enum Selector {
    MetricType,
    MetricLabel(String),
    ResourceType,
    ResourceLabel(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Matcher {
    Equals(String),
    StartsWith(String),
}

impl Matcher {
    fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Matcher::Equals(want), Some(v)) => v == want,
            (Matcher::StartsWith(prefix), Some(v)) => v.starts_with(prefix.as_str()),
            (_, None) => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Equals,
    Open,
    Close,
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                tokens.push(Token::Equals);
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".to_owned()),
                        Some('"') => break,
                        Some('\\') => text.push(chars.next().ok_or("unterminated string")?),
                        Some(c) => text.push(c),
                    }
                }
                tokens.push(Token::Text(text));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("unsupported character {other:?}")),
        }
    }
    Ok(tokens)
}

fn label_key(rest: &str) -> Option<&str> {
    rest.strip_prefix("labels.")
        .or_else(|| rest.strip_prefix("label."))
}

fn selector(word: &str) -> Result<Selector, String> {
    match word {
        "metric.type" => Ok(Selector::MetricType),
        "resource.type" => Ok(Selector::ResourceType),
        _ => {
            if let Some(key) = word.strip_prefix("metric.").and_then(label_key) {
                return Ok(Selector::MetricLabel(key.to_owned()));
            }
            if let Some(key) = word.strip_prefix("resource.").and_then(label_key) {
                return Ok(Selector::ResourceLabel(key.to_owned()));
            }
            Err(format!("unsupported selector {word:?}"))
        }
    }
}

impl Filter {
    /// Parses `input`; the error says what was not understood.
    pub(crate) fn parse(input: &str) -> Result<Filter, String> {
        let tokens = tokenize(input)?;
        let mut clauses = Vec::new();
        let mut rest = tokens.as_slice();
        while !rest.is_empty() {
            if !clauses.is_empty() {
                match rest {
                    [Token::Word(and), tail @ ..] if and == "AND" => rest = tail,
                    _ => return Err("clauses must be joined with AND".to_owned()),
                }
            }
            let (clause, tail) = match rest {
                [Token::Word(sel), Token::Equals, Token::Text(v), tail @ ..] => (
                    Clause {
                        selector: selector(sel)?,
                        matcher: Matcher::Equals(v.clone()),
                    },
                    tail,
                ),
                [
                    Token::Word(sel),
                    Token::Equals,
                    Token::Word(func),
                    Token::Open,
                    Token::Text(v),
                    Token::Close,
                    tail @ ..,
                ] if func == "starts_with" => (
                    Clause {
                        selector: selector(sel)?,
                        matcher: Matcher::StartsWith(v.clone()),
                    },
                    tail,
                ),
                _ => {
                    return Err(
                        "expected <selector> = \"value\" or <selector> = starts_with(\"prefix\")"
                            .to_owned(),
                    );
                }
            };
            clauses.push(clause);
            rest = tail;
        }
        Ok(Filter { clauses })
    }

    /// The metric type the filter pins with `metric.type = "…"`, if any.
    pub(crate) fn exact_metric_type(&self) -> Option<&str> {
        self.clauses
            .iter()
            .find_map(|c| match (&c.selector, &c.matcher) {
                (Selector::MetricType, Matcher::Equals(t)) => Some(t.as_str()),
                _ => None,
            })
    }

    /// Whether a metric descriptor of `metric_type` matches; only `metric.type` clauses apply.
    pub(crate) fn matches_metric_type(&self, metric_type: &str) -> bool {
        self.clauses
            .iter()
            .filter(|c| c.selector == Selector::MetricType)
            .all(|c| c.matcher.matches(Some(metric_type)))
    }

    /// Whether a series with these metric and resource types and labels matches.
    pub(crate) fn matches_series(
        &self,
        metric_type: &str,
        metric_labels: &HashMap<String, String>,
        resource_type: &str,
        resource_labels: &HashMap<String, String>,
    ) -> bool {
        self.clauses.iter().all(|c| {
            let value = match &c.selector {
                Selector::MetricType => Some(metric_type),
                Selector::ResourceType => Some(resource_type),
                Selector::MetricLabel(k) => metric_labels.get(k).map(String::as_str),
                Selector::ResourceLabel(k) => resource_labels.get(k).map(String::as_str),
            };
            c.matcher.matches(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn metric_type_equality_and_prefix() {
        let f = Filter::parse(r#"metric.type = "custom.googleapis.com/a""#).unwrap();
        assert_eq!(f.exact_metric_type(), Some("custom.googleapis.com/a"));
        assert!(f.matches_metric_type("custom.googleapis.com/a"));
        assert!(!f.matches_metric_type("custom.googleapis.com/ab"));

        let f = Filter::parse(r#"metric.type = starts_with("custom.googleapis.com/")"#).unwrap();
        assert_eq!(f.exact_metric_type(), None);
        assert!(f.matches_metric_type("custom.googleapis.com/ab"));
        assert!(!f.matches_metric_type("external.googleapis.com/ab"));
    }

    #[test]
    fn labels_and_resource_clauses_combine_with_and() {
        let f = Filter::parse(
            r#"metric.type="t/x" AND metric.labels.job = "a" AND resource.type = "global" AND resource.label.zone = starts_with("eu")"#,
        )
        .unwrap();
        let r = labels(&[("zone", "europe-west1")]);
        assert!(f.matches_series("t/x", &labels(&[("job", "a")]), "global", &r));
        assert!(!f.matches_series("t/x", &labels(&[("job", "b")]), "global", &r));
        assert!(!f.matches_series("t/x", &labels(&[]), "global", &r));
    }

    #[test]
    fn empty_filter_matches_everything() {
        let f = Filter::parse("  ").unwrap();
        assert!(f.matches_metric_type("anything"));
    }

    #[test]
    fn unsupported_syntax_is_refused() {
        for bad in [
            r#"metric.type = "a" OR metric.type = "b""#,
            r#"metric.type != "a""#,
            r#"project = "p""#,
            r#"metric.type = "a" metric.type = "b""#,
            r#"metric.type = "unterminated"#,
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
