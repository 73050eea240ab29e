//! Google credentials from the metadata server, as on GCE and GKE, through the real binary.
//! Without `GOOGLE_APPLICATION_CREDENTIALS` and without a gcloud file under `HOME`, the
//! credentials library asks the metadata server for a token, with no prior check that it runs on
//! Google Cloud: `GET /computeMetadata/v1/instance/service-accounts/default/token?scopes=...`
//! with `Metadata-Flavor: Google`, over plain HTTP to `GCE_METADATA_HOST` (default
//! `metadata.google.internal`). Here a local fake answers there, and every CreateTimeSeries call
//! to the emulator (over TLS, see `common::tls`) must carry its token; a metadata server that has
//! no token to give must stop the start-up with exit status 1, naming it.
//!
//! Needs the `openssl` command (`scripts/install-deps.sh`) to make the test CA.

mod common;

use common::fake_prometheus;
use common::tls::{
    make_ca, run_until_start_up_fails, serve_tls, sidecar_over_tls, wait_for_all_points,
};
use gcm_emulator::{Emulator, EmulatorConfig};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const METRIC: &str = "mds_gauge";
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const SCOPE: &str = "https://www.googleapis.com/auth/monitoring.write";
const ACCESS_TOKEN: &str = "ya29.access-token-from-the-fake-metadata-server";

/// A metadata server on a loopback port that gives [`ACCESS_TOKEN`] for the monitoring.write
/// scope to requests with the `Metadata-Flavor: Google` header, and answers 404 to anything
/// else.
async fn metadata_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(TOKEN_PATH))
        .and(header("metadata-flavor", "Google"))
        .and(query_param("scopes", SCOPE))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("metadata-flavor", "Google")
                .set_body_json(json!({
                    "access_token": ACCESS_TOKEN,
                    "expires_in": 3599,
                    "token_type": "Bearer"
                })),
        )
        .mount(&server)
        .await;
    server
}

/// `host:port` of `server`, as `GCE_METADATA_HOST` takes it.
fn host(server: &MockServer) -> String {
    server.address().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_of_the_metadata_server_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mds = metadata_server().await;
    let ca = make_ca(dir.path());
    let emulator = Emulator::new(EmulatorConfig {
        summary_interval: None,
        ..EmulatorConfig::default()
    });
    let (addr, calls) = serve_tls(&emulator, &ca).await;
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let mds_host = host(&mds);
    // HOME is an empty directory and GOOGLE_APPLICATION_CREDENTIALS unset (see common::tls).
    let mut child = sidecar_over_tls(
        dir.path(),
        addr.port(),
        &prometheus.uri(),
        METRIC,
        Some(&ca.ca),
        &[("GCE_METADATA_HOST", Some(mds_host.as_str()))],
    );
    wait_for_all_points(&emulator, &mut child).await;

    let calls = calls.lock().unwrap().clone();
    assert!(!calls.is_empty());
    for call in &calls {
        assert_eq!(call.bearer_token(), ACCESS_TOKEN);
    }
    let requests = mds.received_requests().await.unwrap();
    for request in &requests {
        assert_eq!(
            request.headers.get("metadata-flavor").map(|v| v.as_bytes()),
            Some(&b"Google"[..]),
            "{} {}",
            request.method,
            request.url
        );
    }
    let tokens = requests.iter().filter(|r| r.url.path() == TOKEN_PATH);
    assert_eq!(tokens.count(), 1, "one token for the whole run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_server_without_a_service_account_stops_the_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // An instance without a service account: every path is 404.
    let mds = MockServer::start().await;
    let mds_host = host(&mds);

    let (status, log) = run_until_start_up_fails(
        dir.path(),
        &[("GCE_METADATA_HOST", Some(mds_host.as_str()))],
    );
    assert_eq!(status, Some(1), "{log}");
    assert!(log.contains("Google credentials do not work"), "{log}");
    assert!(
        log.contains(&format!("metadata server at {mds_host}")),
        "the metadata server is not named: {log}"
    );
    let requests = mds.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "a 404 is not retried");
    assert_eq!(requests[0].url.path(), TOKEN_PATH);
}
