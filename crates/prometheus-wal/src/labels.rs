//! Label sets as they appear in WAL series records.
//!
//! A label set is kept sorted by name, as Prometheus always writes it; lookups rely on that.

/// One label of a series: name and value, both arbitrary UTF-8 (Prometheus 3 allows any bytes;
/// invalid UTF-8 is replaced when decoding).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Label name, e.g. `__name__` or `job`.
    pub name: String,
    /// Label value.
    pub value: String,
}

/// A series' label set, sorted by name.
pub type Labels = Vec<Label>;
