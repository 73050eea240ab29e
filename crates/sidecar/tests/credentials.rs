//! Google credentials from the metadata server, as on GCE and GKE: a local fake answers at
//! `GCE_METADATA_HOST`, and the sidecar's client must obtain a token for the monitoring.write
//! scope from it at start-up.

use std::time::Duration;

use stackdriver_prometheus_sidecar::config::ApiAddress;
use stackdriver_prometheus_sidecar::export::GrpcSink;
use stackdriver_prometheus_sidecar::export::client::{
    MONITORING_WRITE_SCOPE, install_crypto_provider,
};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_token_for_monitoring_write_comes_from_the_metadata_server() {
    let mds = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/computeMetadata/v1/instance/service-accounts/default/token",
        ))
        .and(header("Metadata-Flavor", "Google"))
        .and(query_param("scopes", MONITORING_WRITE_SCOPE))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "token-from-the-fake",
            "expires_in": 3600,
            "token_type": "Bearer"
        })))
        .expect(1..)
        .mount(&mds)
        .await;
    let home = tempfile::tempdir().unwrap();
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("GCE_METADATA_HOST", mds.address().to_string());
        std::env::set_var("HOME", home.path());
        std::env::remove_var("GOOGLE_APPLICATION_CREDENTIALS");
    }
    install_crypto_provider();
    let sink = GrpcSink::new(
        &ApiAddress {
            url: "https://monitoring.googleapis.com:443/".into(),
            host: "monitoring.googleapis.com".into(),
            port: 443,
            auth: true,
        },
        Duration::from_secs(10),
    )
    .unwrap();
    sink.check_credentials(Duration::from_secs(20))
        .await
        .unwrap();
    mds.verify().await;
}
