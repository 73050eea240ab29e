"""Runs Google's official Python client for Cloud Monitoring against a plaintext endpoint.

Used by tests/python_client.rs, which checks what this prints. Usage:

    official_client.py HOST:PORT PROJECT_ID STEPS_JSON

STEPS_JSON is a JSON list of steps, run in order with one MetricServiceClient over an insecure
gRPC channel; one JSON object per step is printed, as a JSON list, on stdout:

* {"op": "create_gauges", "series": [{"type": T, "labels": {...}, "end": SECONDS, "value": V}]}
  writes one GAUGE DOUBLE point per series on the `global` resource with create_time_series;
  prints {"ok": true} or the error the client raised.
* {"op": "list_time_series", "filter": F, "start": SECONDS, "end": SECONDS, "page_size": N}
  calls list_time_series with the FULL view and iterates every page; prints the pages seen and
  each series with its points.
* {"op": "list_metric_descriptors", "filter": F} prints every descriptor.

An error raised by the client in a step is printed as {"error": {"code": NAME, "message": M,
"details": [...]}} and the next steps still run.
"""

import json
import sys

import grpc
from google.api import metric_pb2
from google.api_core import exceptions
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcTransport,
)
from google.protobuf import timestamp_pb2


def timestamp(seconds):
    return timestamp_pb2.Timestamp(seconds=int(seconds))


def seconds(value):
    """A proto-plus timestamp field (a datetime, or None when unset) as float seconds."""
    if value is None:
        return None
    return value.timestamp()


def kind_name(value):
    """A google.api MetricKind (a plain protobuf enum, seen as an int) by name."""
    return metric_pb2.MetricDescriptor.MetricKind.Name(value)


def value_type_name(value):
    return metric_pb2.MetricDescriptor.ValueType.Name(value)


def typed_value(value):
    kind = monitoring_v3.TypedValue.pb(value).WhichOneof("value")
    if kind == "distribution_value":
        d = value.distribution_value
        return {
            "distribution": {
                "count": d.count,
                "mean": d.mean,
                "bounds": list(d.bucket_options.explicit_buckets.bounds),
                "bucket_counts": list(d.bucket_counts),
            }
        }
    return {kind: getattr(value, kind)}


def create_gauges(client, project, step):
    series = []
    for s in step["series"]:
        ts = monitoring_v3.TimeSeries()
        ts.metric.type = s["type"]
        ts.metric.labels.update(s.get("labels", {}))
        ts.resource.type = "global"
        ts.resource.labels["project_id"] = project
        ts.metric_kind = metric_pb2.MetricDescriptor.MetricKind.GAUGE
        ts.value_type = metric_pb2.MetricDescriptor.ValueType.DOUBLE
        point = monitoring_v3.Point(
            interval=monitoring_v3.TimeInterval(end_time=timestamp(s["end"])),
            value=monitoring_v3.TypedValue(double_value=s["value"]),
        )
        ts.points = [point]
        series.append(ts)
    client.create_time_series(name=f"projects/{project}", time_series=series)
    return {"ok": True}


def list_time_series(client, project, step):
    request = monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{project}",
        filter=step["filter"],
        interval=monitoring_v3.TimeInterval(
            start_time=timestamp(step["start"]), end_time=timestamp(step["end"])
        ),
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        page_size=step.get("page_size", 0),
    )
    pages = 0
    found = []
    for page in client.list_time_series(request=request).pages:
        pages += 1
        for ts in page.time_series:
            found.append(
                {
                    "metric_type": ts.metric.type,
                    "metric_labels": dict(ts.metric.labels),
                    "resource_type": ts.resource.type,
                    "resource_labels": dict(ts.resource.labels),
                    "metric_kind": kind_name(ts.metric_kind),
                    "value_type": value_type_name(ts.value_type),
                    "points": [
                        {
                            "start": seconds(p.interval.start_time),
                            "end": seconds(p.interval.end_time),
                            "value": typed_value(p.value),
                        }
                        for p in ts.points
                    ],
                }
            )
    return {"pages": pages, "time_series": found}


def list_metric_descriptors(client, project, step):
    request = monitoring_v3.ListMetricDescriptorsRequest(
        name=f"projects/{project}", filter=step.get("filter", "")
    )
    return {
        "descriptors": [
            {
                "name": d.name,
                "type": d.type,
                "metric_kind": kind_name(d.metric_kind),
                "value_type": value_type_name(d.value_type),
                "labels": sorted(label.key for label in d.labels),
            }
            for d in client.list_metric_descriptors(request=request)
        ]
    }


def describe_error(err):
    summary_type = monitoring_v3.CreateTimeSeriesSummary.pb()
    details = []
    for detail in err.details or []:
        # api_core unpacks the google.rpc detail types it knows and leaves the others as Any.
        if hasattr(detail, "Is") and detail.Is(summary_type.DESCRIPTOR):
            summary = summary_type()
            detail.Unpack(summary)
            details.append(
                {
                    "summary": {
                        "total_point_count": summary.total_point_count,
                        "success_point_count": summary.success_point_count,
                        "errors": [
                            {"code": e.status.code, "point_count": e.point_count}
                            for e in summary.errors
                        ],
                    }
                }
            )
        else:
            details.append({"other": type(detail).__name__})
    return {
        "error": {
            "code": err.grpc_status_code.name if err.grpc_status_code else None,
            "message": err.message,
            "details": details,
        }
    }


OPS = {
    "create_gauges": create_gauges,
    "list_time_series": list_time_series,
    "list_metric_descriptors": list_metric_descriptors,
}


def main():
    address, project, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    channel = grpc.insecure_channel(address)
    client = monitoring_v3.MetricServiceClient(
        transport=MetricServiceGrpcTransport(channel=channel)
    )
    results = []
    for step in steps:
        try:
            results.append(OPS[step["op"]](client, project, step))
        except exceptions.GoogleAPICallError as err:
            results.append(describe_error(err))
    json.dump(results, sys.stdout)
    channel.close()


if __name__ == "__main__":
    main()
