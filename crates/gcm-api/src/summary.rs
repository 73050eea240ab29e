//! `CreateTimeSeriesSummary` carried in the details of a gRPC status.
//!
//! When Cloud Monitoring rejects some of the series of a `CreateTimeSeries` request, the error's
//! `grpc-status-details-bin` trailer holds a serialized `google.rpc.Status` whose `details`
//! include a `google.protobuf.Any` wrapping a [`CreateTimeSeriesSummary`]: how many points the
//! request held, how many were written, and how many failed under which status code.
//!
//! This module owns packing such a summary into a [`tonic::Status`] (for servers) and finding it
//! again (for clients). It must never interpret the summary: counting and retry decisions belong
//! to whoever calls it.

use prost::Message;
use tonic::codegen::Bytes;

use crate::monitoring::CreateTimeSeriesSummary;
use crate::rpc;

/// The `Any.type_url` under which a [`CreateTimeSeriesSummary`] travels.
pub const CREATE_TIME_SERIES_SUMMARY_TYPE_URL: &str =
    "type.googleapis.com/google.monitoring.v3.CreateTimeSeriesSummary";

/// Builds a status with `code` and `message` whose details carry `summary`.
///
/// The details are a `google.rpc.Status` with the same code and message and a single `Any`
/// holding the summary, which is how Google's servers shape them.
pub fn status_with_summary(
    code: tonic::Code,
    message: impl Into<String>,
    summary: &CreateTimeSeriesSummary,
) -> tonic::Status {
    let message = message.into();
    let details = rpc::Status {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: CREATE_TIME_SERIES_SUMMARY_TYPE_URL.to_owned(),
            value: summary.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(code, message, Bytes::from(details.encode_to_vec()))
}

/// Finds the [`CreateTimeSeriesSummary`] in the details of `status`.
///
/// Answers `None` when the status has no details, when they are not a `google.rpc.Status`, when
/// none of its `Any`s has [`CREATE_TIME_SERIES_SUMMARY_TYPE_URL`], or when that `Any` does not
/// decode: a client cannot do better than "no summary" with any of these.
pub fn summary_from_status(status: &tonic::Status) -> Option<CreateTimeSeriesSummary> {
    if status.details().is_empty() {
        return None;
    }
    let details = rpc::Status::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .find(|any| any.type_url == CREATE_TIME_SERIES_SUMMARY_TYPE_URL)
        .and_then(|any| CreateTimeSeriesSummary::decode(any.value.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::create_time_series_summary::Error as SummaryError;

    fn summary() -> CreateTimeSeriesSummary {
        CreateTimeSeriesSummary {
            total_point_count: 5,
            success_point_count: 3,
            errors: vec![SummaryError {
                status: Some(rpc::Status {
                    code: 3,
                    message: String::new(),
                    details: vec![],
                }),
                point_count: 2,
            }],
        }
    }

    #[test]
    fn summary_survives_a_round_trip_through_status_details() {
        let status = status_with_summary(tonic::Code::InvalidArgument, "two failed", &summary());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "two failed");
        assert_eq!(summary_from_status(&status), Some(summary()));
    }

    #[test]
    fn status_without_details_has_no_summary() {
        assert_eq!(
            summary_from_status(&tonic::Status::unavailable("down")),
            None
        );
    }

    #[test]
    fn details_with_other_types_have_no_summary() {
        let details = rpc::Status {
            code: 3,
            message: "x".into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.BadRequest".into(),
                value: vec![],
            }],
        };
        let status = tonic::Status::with_details(
            tonic::Code::InvalidArgument,
            "x",
            Bytes::from(details.encode_to_vec()),
        );
        assert_eq!(summary_from_status(&status), None);
    }

    #[test]
    fn garbage_details_have_no_summary() {
        let status = tonic::Status::with_details(
            tonic::Code::InvalidArgument,
            "x",
            Bytes::from_static(&[0xff, 0xff, 0xff]),
        );
        assert_eq!(summary_from_status(&status), None);
    }
}
