//! Google user credentials through the real binary: the JSON file `gcloud auth
//! application-default login` writes (`"type": "authorized_user"` with `client_id`,
//! `client_secret` and `refresh_token`). The credentials library trades the refresh token for an
//! access token with a POST to the file's `token_uri` (Google's token endpoint when the file has
//! none); here that is a local fake over plain HTTP that hands a token out only for the right
//! grant and answers as Google does otherwise. Every CreateTimeSeries call to the emulator (over
//! TLS, see `common::tls`) must carry that token, whether the file is named by
//! `GOOGLE_APPLICATION_CREDENTIALS` or found where gcloud writes it, and a refresh the endpoint
//! refuses must stop the start-up with exit status 1 and a message naming the file.
//!
//! Needs the `openssl` command (`scripts/install-deps.sh`) to make the test CA.

mod common;

use std::path::{Path, PathBuf};

use common::fake_prometheus;
use common::tls::{
    home_dir, make_ca, run_until_start_up_fails, serve_tls, sidecar_over_tls, wait_for_all_points,
};
use gcm_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use wiremock::matchers::{any, body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const METRIC: &str = "user_gauge";
const CLIENT_ID: &str = "1234567890-sidecartest.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "test-client-secret";
const REFRESH_TOKEN: &str = "1//test-refresh-token";
const ACCESS_TOKEN: &str = "ya29.access-token-from-the-fake-endpoint";
const SCOPE: &str = "https://www.googleapis.com/auth/monitoring.write";

/// A token endpoint on a loopback port, at `/token`. The right refresh-token grant for the test
/// client (a JSON body, as the library sends it, asking for the monitoring.write scope) gets
/// [`ACCESS_TOKEN`]; the test client with another refresh token gets 400 `invalid_grant`;
/// anything else 401 `invalid_client`.
async fn token_endpoint() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(json!({
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
            "scopes": SCOPE,
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": ACCESS_TOKEN,
            "expires_in": 3599,
            "scope": SCOPE,
            "token_type": "Bearer"
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_partial_json(json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        })))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked."
        })))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "The OAuth client was not found."
        })))
        .with_priority(3)
        .mount(&server)
        .await;
    server
}

/// The user credentials file as gcloud writes it, with the token endpoint of `server`, and
/// `changes` applied on top.
fn user_credentials(server: &MockServer, changes: Value) -> String {
    let mut file = json!({
        "account": "",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "type": "authorized_user",
        "universe_domain": "googleapis.com",
        "token_uri": format!("{}/token", server.uri()),
    });
    for (key, value) in changes.as_object().unwrap() {
        file[key] = value.clone();
    }
    serde_json::to_string_pretty(&file).unwrap()
}

/// Writes `contents` where gcloud keeps its credentials under the home directory of `dir`.
fn write_gcloud_file(dir: &Path, contents: &str) -> PathBuf {
    let gcloud = home_dir(dir).join(".config/gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    let file = gcloud.join("application_default_credentials.json");
    std::fs::write(&file, contents).unwrap();
    file
}

/// How often the endpoint was asked for a token.
async fn refreshes(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// Runs the sidecar with the user credentials of `env` against the emulator over TLS until all
/// points arrived; returns the headers of every call.
async fn send_all_points(dir: &Path, env: &[(&str, Option<&str>)]) -> Vec<common::tls::Call> {
    let ca = make_ca(dir);
    let emulator = Emulator::new(EmulatorConfig {
        summary_interval: None,
        ..EmulatorConfig::default()
    });
    let (addr, calls) = serve_tls(&emulator, &ca).await;
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let mut child = sidecar_over_tls(
        dir,
        addr.port(),
        &prometheus.uri(),
        METRIC,
        Some(&ca.ca),
        env,
    );
    wait_for_all_points(&emulator, &mut child).await;
    let calls = calls.lock().unwrap().clone();
    assert!(!calls.is_empty());
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refreshed_access_token_is_sent_with_the_file_named_by_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = token_endpoint().await;
    let file = dir.path().join("user.json");
    std::fs::write(&file, user_credentials(&endpoint, json!({}))).unwrap();

    let calls = send_all_points(
        dir.path(),
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            Some(file.to_str().unwrap()),
        )],
    )
    .await;
    for call in &calls {
        assert_eq!(call.bearer_token(), ACCESS_TOKEN);
        assert_eq!(call.header("x-goog-user-project"), None);
    }
    // One token for the whole run: it is valid for an hour and shared by every shard.
    assert_eq!(refreshes(&endpoint).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcloud_file_under_home_is_found_and_its_quota_project_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = token_endpoint().await;
    write_gcloud_file(
        dir.path(),
        &user_credentials(&endpoint, json!({"quota_project_id": "billing-project"})),
    );

    // No GOOGLE_APPLICATION_CREDENTIALS: HOME leads to the file.
    let calls = send_all_points(dir.path(), &[]).await;
    for call in &calls {
        assert_eq!(call.bearer_token(), ACCESS_TOKEN);
        assert_eq!(call.header("x-goog-user-project"), Some("billing-project"));
    }
    assert_eq!(refreshes(&endpoint).await, 1);
}

/// Starts the sidecar with the user credentials file `contents`, named by
/// `GOOGLE_APPLICATION_CREDENTIALS` or else in gcloud's place, and checks that it stops at
/// start-up with exit status 1, naming the file and quoting the endpoint's `error`.
async fn refused_refresh_stops_the_start_up(changes: Value, by_environment: bool, error: &str) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = token_endpoint().await;
    let contents = user_credentials(&endpoint, changes);
    let file = if by_environment {
        let file = dir.path().join("user.json");
        std::fs::write(&file, contents).unwrap();
        file
    } else {
        write_gcloud_file(dir.path(), &contents)
    };
    let named = file.to_str().unwrap();
    let env: &[_] = if by_environment {
        &[("GOOGLE_APPLICATION_CREDENTIALS", Some(named))]
    } else {
        &[]
    };

    let (status, log) = run_until_start_up_fails(dir.path(), env);
    assert_eq!(status, Some(1), "{log}");
    assert!(log.contains("Google credentials do not work"), "{log}");
    assert!(log.contains(named), "the file is not named: {log}");
    assert!(log.contains(error), "{error:?} missing from: {log}");
    assert_eq!(refreshes(&endpoint).await, 1, "a refusal is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_stops_the_start_up_naming_the_file() {
    refused_refresh_stops_the_start_up(
        json!({"refresh_token": "1//revoked"}),
        true,
        "invalid_grant",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_client_stops_the_start_up_naming_the_file() {
    refused_refresh_stops_the_start_up(
        json!({"client_secret": "wrong-secret"}),
        true,
        "invalid_client",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_gcloud_file_is_named_too() {
    refused_refresh_stops_the_start_up(
        json!({"refresh_token": "1//revoked"}),
        false,
        "invalid_grant",
    )
    .await;
}
