//! The hand-off between reading and sending: what a converted point is, the encoded prototype
//! of its series, the lanes series are partitioned into, the API's rules for one series and
//! point, and the interning of what series share. The bottom layer of the crate: it imports no
//! other module of it, and must never read the WAL, talk to an API or keep state of a run.

pub(crate) mod intern;
pub(crate) mod lanes;
pub mod native;
pub(crate) mod point;
pub(crate) mod prototype;
pub(crate) mod validate;
pub(crate) mod wire;

pub use native::NativeHistogram;
pub use point::{Buckets, Distribution, Exemplar, Point, PointKind, PointValue};
pub use prototype::{LastInterval, SeriesPrototype, SharedPrototype};
pub use validate::Invalid;
