//! The hand-written server dispatcher, exercised through a real tonic server on loopback and the
//! generated `MetricServiceClient`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use gcm_api::api;
use gcm_api::monitoring::create_time_series_summary::Error as SummaryError;
use gcm_api::monitoring::metric_service_client::MetricServiceClient;
use gcm_api::monitoring::{
    CreateTimeSeriesRequest, CreateTimeSeriesSummary, GetMetricDescriptorRequest,
    ListMetricDescriptorsRequest, ListMetricDescriptorsResponse, TimeSeries,
};
use gcm_api::{MetricService, MetricServiceServer, rpc, status_with_summary, summary_from_status};
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// Records CreateTimeSeries requests; rejects those for project "reject" with a summary.
#[derive(Default)]
struct Recorder {
    created: Mutex<Vec<CreateTimeSeriesRequest>>,
}

#[tonic::async_trait]
impl MetricService for Recorder {
    async fn create_time_series(
        &self,
        request: Request<CreateTimeSeriesRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        if request.name == "projects/reject" {
            let summary = CreateTimeSeriesSummary {
                total_point_count: request.time_series.len() as i32,
                success_point_count: 0,
                errors: vec![SummaryError {
                    status: Some(rpc::Status {
                        code: 3,
                        ..Default::default()
                    }),
                    point_count: request.time_series.len() as i32,
                }],
            };
            return Err(status_with_summary(
                Code::InvalidArgument,
                "rejected",
                &summary,
            ));
        }
        self.created.lock().unwrap().push(request);
        Ok(Response::new(()))
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(ListMetricDescriptorsResponse {
            metric_descriptors: vec![api::MetricDescriptor {
                name: format!("{name}/metricDescriptors/custom.googleapis.com/x"),
                r#type: "custom.googleapis.com/x".into(),
                ..Default::default()
            }],
            next_page_token: String::new(),
        }))
    }
}

async fn start(recorder: Arc<Recorder>) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(MetricServiceServer::from_arc(recorder))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop)
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn one_series() -> TimeSeries {
    TimeSeries {
        metric: Some(api::Metric {
            r#type: "custom.googleapis.com/x".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_time_series_reaches_the_implementation_and_answers_empty() {
    let recorder = Arc::new(Recorder::default());
    let (addr, _stop) = start(Arc::clone(&recorder)).await;
    let mut client = MetricServiceClient::new(channel(addr).await);

    let request = CreateTimeSeriesRequest {
        name: "projects/p".into(),
        time_series: vec![one_series(), one_series()],
    };
    client
        .create_time_series(request.clone())
        .await
        .expect("accepted");

    assert_eq!(*recorder.created.lock().unwrap(), vec![request]);
}

#[tokio::test]
async fn summary_in_status_details_crosses_the_wire() {
    let recorder = Arc::new(Recorder::default());
    let (addr, _stop) = start(Arc::clone(&recorder)).await;
    let mut client = MetricServiceClient::new(channel(addr).await);

    let status = client
        .create_time_series(CreateTimeSeriesRequest {
            name: "projects/reject".into(),
            time_series: vec![one_series(), one_series(), one_series()],
        })
        .await
        .expect_err("rejected");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "rejected");
    let summary = summary_from_status(&status).expect("summary in details");
    assert_eq!(summary.total_point_count, 3);
    assert_eq!(summary.success_point_count, 0);
    assert_eq!(summary.errors.len(), 1);
    assert_eq!(summary.errors[0].point_count, 3);
    assert_eq!(summary.errors[0].status.as_ref().map(|s| s.code), Some(3));
    assert!(recorder.created.lock().unwrap().is_empty());
}

#[tokio::test]
async fn list_answers_come_back_decoded() {
    let (addr, _stop) = start(Arc::new(Recorder::default())).await;
    let mut client = MetricServiceClient::new(channel(addr).await);

    let response = client
        .list_metric_descriptors(ListMetricDescriptorsRequest {
            name: "projects/p".into(),
            ..Default::default()
        })
        .await
        .expect("served")
        .into_inner();

    assert_eq!(response.metric_descriptors.len(), 1);
    assert_eq!(
        response.metric_descriptors[0].name,
        "projects/p/metricDescriptors/custom.googleapis.com/x"
    );
}

#[tokio::test]
async fn methods_not_overridden_answer_unimplemented() {
    let (addr, _stop) = start(Arc::new(Recorder::default())).await;
    let mut client = MetricServiceClient::new(channel(addr).await);

    let status = client
        .get_metric_descriptor(GetMetricDescriptorRequest {
            name: "projects/p/x".into(),
        })
        .await
        .expect_err("not implemented");

    assert_eq!(status.code(), Code::Unimplemented);
    assert!(
        status.message().contains("GetMetricDescriptor"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn unknown_method_path_answers_unimplemented() {
    let (addr, _stop) = start(Arc::new(Recorder::default())).await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready().await.unwrap();

    let status = grpc
        .unary::<CreateTimeSeriesRequest, (), _>(
            Request::new(CreateTimeSeriesRequest::default()),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/google.monitoring.v3.MetricService/NoSuchMethod",
            ),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("no such method");

    assert_eq!(status.code(), Code::Unimplemented);
}
