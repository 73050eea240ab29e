//! The gRPC face of the emulator: `MetricService` methods mapped to the store.
//!
//! Owns the order of events for each call (the configured latency, then an injected fault if one
//! is queued or drawn, then the real handling, where a drawn share of series may be refused) and the debug log of refused writes. It must never hold
//! rules itself: those live in [`crate::create`], [`crate::validate`] and [`crate::store`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use gcm_api::MetricService;
use gcm_api::api::MetricDescriptor;
use gcm_api::monitoring::{
    CreateTimeSeriesRequest, GetMetricDescriptorRequest, ListMetricDescriptorsRequest,
    ListMetricDescriptorsResponse, ListTimeSeriesRequest, ListTimeSeriesResponse,
};
use tonic::{Request, Response, Status};

use crate::faults::Faults;
use crate::store::Store;
use crate::{EmulatorConfig, create, list, time};

/// What the server and the [`Emulator`](crate::Emulator) handle share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) store: Store,
    /// Statuses the next `CreateTimeSeries` calls answer instead of being handled, in order.
    pub(crate) faults: Mutex<VecDeque<Status>>,
    /// Faults injected by configuration (random failures, partial failures, an outage).
    pub(crate) injected: Faults,
}

/// The `MetricService` implementation served by the emulator.
pub(crate) struct EmulatorService {
    pub(crate) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl MetricService for EmulatorService {
    async fn create_time_series(
        &self,
        request: Request<CreateTimeSeriesRequest>,
    ) -> Result<Response<()>, Status> {
        let shared = &self.shared;
        if !shared.config.create_latency.is_zero() {
            tokio::time::sleep(shared.config.create_latency).await;
        }
        let request = request.into_inner();
        let fault = shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .or_else(|| shared.injected.call_fault(&shared.config));
        if let Some(status) = fault {
            create::count_injected_fault(&shared.store, &request);
            return Err(status);
        }
        let refused = shared
            .injected
            .refused_series(&shared.config, request.time_series.len());
        match create::create_time_series(
            &shared.store,
            &shared.config,
            &request,
            &refused,
            time::now(),
        ) {
            Ok(()) => Ok(Response::new(())),
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "CreateTimeSeries refused");
                Err(status)
            }
        }
    }

    async fn list_time_series(
        &self,
        request: Request<ListTimeSeriesRequest>,
    ) -> Result<Response<ListTimeSeriesResponse>, Status> {
        list::list_time_series(&self.shared.store, request.get_ref()).map(Response::new)
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        list::list_metric_descriptors(&self.shared.store, request.get_ref()).map(Response::new)
    }

    async fn get_metric_descriptor(
        &self,
        request: Request<GetMetricDescriptorRequest>,
    ) -> Result<Response<MetricDescriptor>, Status> {
        list::get_metric_descriptor(&self.shared.store, request.get_ref()).map(Response::new)
    }
}
