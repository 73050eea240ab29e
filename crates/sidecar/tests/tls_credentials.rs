//! The real binary talking to a Monitoring API over TLS with Google credentials: a local gRPC
//! server with a certificate from a test CA made at run time (trusted through `SSL_CERT_FILE`),
//! serving the emulator, and a service-account key made at run time given by
//! `GOOGLE_APPLICATION_CREDENTIALS`. Every call must carry `authorization: Bearer <JWT>` signed
//! by that key for the `monitoring.write` scope (the credentials library signs its own JWT
//! instead of exchanging it at `token_uri`) and a user agent naming the sidecar and its version.
//! Without the CA the handshake must fail and nothing be written.
//!
//! Needs the `openssl` command (`scripts/install-deps.sh`) to make the keys and certificates.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Child;
use common::fake_prometheus;
use common::tls::{
    CLIENT_EMAIL, KEY_ID, TestCa, make_ca, make_service_account, serve_tls, sidecar_over_tls,
    wait_for_all_points,
};
use gcm_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

const METRIC: &str = "tls_gauge";

/// Key material made for one test run.
struct Keys {
    /// The test CA and the server's certificate.
    tls: TestCa,
    /// A service-account key file as Google issues them, with an RSA key made now.
    service_account: PathBuf,
    /// The service account's public key (PKCS#1 DER), to verify the tokens.
    public_key: Vec<u8>,
}

fn make_keys(dir: &Path) -> Keys {
    let tls = make_ca(dir);
    let (service_account, public_key) = make_service_account(dir);
    Keys {
        tls,
        service_account,
        public_key,
    }
}

/// Starts the sidecar against `https://localhost:<port>/` with the service-account key, and
/// `SSL_CERT_FILE` set to `ca` when given.
fn sidecar(dir: &Path, keys: &Keys, port: u16, prometheus: &str, ca: Option<&Path>) -> Child {
    sidecar_over_tls(
        dir,
        port,
        prometheus,
        METRIC,
        ca,
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            Some(keys.service_account.to_str().unwrap()),
        )],
    )
}

fn decode_part(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("{part:?} is not base64url: {e}"))
}

/// Checks that `token` is a JWT signed with the service account's key for the monitoring.write
/// scope, valid now.
fn check_token(token: &str, public_key: &[u8]) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let header: Value = serde_json::from_slice(&decode_part(parts[0])).unwrap();
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(header["typ"], "JWT", "{header}");
    assert_eq!(header["kid"], KEY_ID, "{header}");
    let claims: Value = serde_json::from_slice(&decode_part(parts[1])).unwrap();
    assert_eq!(claims["iss"], CLIENT_EMAIL, "{claims}");
    assert_eq!(claims["sub"], CLIENT_EMAIL, "{claims}");
    assert_eq!(
        claims["scope"], "https://www.googleapis.com/auth/monitoring.write",
        "{claims}"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(iat <= now + 60 && exp > now, "not valid now: {claims}");
    assert!(exp - iat <= 3600 + 120, "valid for too long: {claims}");

    let signed = format!("{}.{}", parts[0], parts[1]);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(signed.as_bytes(), &decode_part(parts[2]))
    .expect("the token is signed with the service account's key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_arrive_over_tls_with_a_signed_token_and_the_user_agent() {
    let dir = tempfile::tempdir().unwrap();
    let keys = make_keys(dir.path());
    let emulator = Emulator::new(EmulatorConfig {
        summary_interval: None,
        ..EmulatorConfig::default()
    });
    let (addr, calls) = serve_tls(&emulator, &keys.tls).await;
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let mut child = sidecar(
        dir.path(),
        &keys,
        addr.port(),
        &prometheus.uri(),
        Some(&keys.tls.ca),
    );

    wait_for_all_points(&emulator, &mut child).await;

    let calls = calls.lock().unwrap().clone();
    assert!(!calls.is_empty());
    for call in &calls {
        check_token(call.bearer_token(), &keys.public_key);
        let user_agent = call.header("user-agent").unwrap_or_default();
        assert!(
            user_agent.starts_with(&format!(
                "stackdriver-prometheus-sidecar/{}",
                env!("CARGO_PKG_VERSION")
            )),
            "user agent {user_agent:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = make_keys(dir.path());
    let emulator = Emulator::new(EmulatorConfig {
        summary_interval: None,
        ..EmulatorConfig::default()
    });
    let (addr, calls) = serve_tls(&emulator, &keys.tls).await;
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    // The system's roots and the bundled ones only: the test CA is in neither.
    let child = sidecar(dir.path(), &keys, addr.port(), &prometheus.uri(), None);

    // The sender's retries (logged at debug level) say why.
    let refused = |log: &str| {
        log.lines().any(|l| {
            l.contains("retrying request") && l.contains("invalid peer certificate: UnknownIssuer")
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !refused(&child.log_tail(200)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no certificate error logged:\n{}",
            child.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(calls.lock().unwrap().is_empty(), "no call got through");
    assert_eq!(emulator.store().stats().points_accepted, 0);
}
