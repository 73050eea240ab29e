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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fake_prometheus::{self, now_ms, write_gauge_wal};
use common::{Child, free_port, require_binary};
use gcm_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

const METRIC: &str = "tls_gauge";
const SERIES: usize = 10;
const ROUNDS: usize = 3;
const CLIENT_EMAIL: &str = "sidecar@tls-test.iam.gserviceaccount.com";
const KEY_ID: &str = "test-key-1";

/// Runs `openssl` in `dir` with the space-separated `args`, failing the test with its output if
/// it fails.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new(require_binary("openssl"))
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Key material made for one test run.
struct Keys {
    /// The test CA's certificate (PEM), the only root that can vouch for the server.
    ca: PathBuf,
    /// The server's certificate (for `localhost` and 127.0.0.1) and key, PEM.
    server_cert: String,
    server_key: String,
    /// A service-account key file as Google issues them, with an RSA key made now.
    service_account: PathBuf,
    /// The service account's public key (PKCS#1 DER), to verify the tokens.
    public_key: Vec<u8>,
}

fn make_keys(dir: &Path) -> Keys {
    // A CA, and a server certificate it signs (P-256 keys).
    let p256 = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        dir,
        &format!(
            "req -x509 {p256} -keyout ca.key -out ca.pem -days 2 -subj /CN=sidecar-test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ),
    );
    openssl(
        dir,
        &format!("req -new {p256} -keyout server.key -out server.csr -subj /CN=localhost"),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 \
         -extfile server.ext -out server.pem",
    );
    // The service account's RSA key (PKCS#8, as in Google's key files) and its public half.
    openssl(
        dir,
        "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out service-account.pem",
    );
    openssl(
        dir,
        "rsa -in service-account.pem -RSAPublicKey_out -outform DER -out service-account.pub.der",
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    // A key file shaped as the ones the Cloud console hands out. Its token_uri leads nowhere:
    // a token exchange would fail, so the calls can only work with a self-signed JWT.
    let key_file = json!({
        "type": "service_account",
        "project_id": "tls-test",
        "private_key_id": KEY_ID,
        "private_key": read("service-account.pem"),
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("http://127.0.0.1:{}/token", free_port()),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com"
    });
    let service_account = dir.join("service-account.json");
    std::fs::write(&service_account, key_file.to_string()).unwrap();
    Keys {
        ca: dir.join("ca.pem"),
        server_cert: read("server.pem"),
        server_key: read("server.key"),
        service_account,
        public_key: std::fs::read(dir.join("service-account.pub.der")).unwrap(),
    }
}

/// What the server saw of one call: its `authorization` and `user-agent` headers.
#[derive(Clone, Debug)]
struct Call {
    authorization: Option<String>,
    user_agent: Option<String>,
}

/// The emulator served over TLS with the test certificate on a loopback port, recording the
/// headers of every call.
async fn serve_tls(emulator: &Emulator, keys: &Keys) -> (SocketAddr, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let record = move |request: tonic::Request<()>| {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        seen.lock().unwrap().push(Call {
            authorization: header("authorization"),
            user_agent: header("user-agent"),
        });
        Ok(request)
    };
    let tls =
        ServerTlsConfig::new().identity(Identity::from_pem(&keys.server_cert, &keys.server_key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(InterceptedService::new(emulator.service(), record))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    (addr, calls)
}

/// Starts the sidecar against `https://localhost:<port>/` with the service-account key, and
/// `SSL_CERT_FILE` set to `ca` when given.
fn sidecar(dir: &Path, keys: &Keys, port: u16, prometheus: &str, ca: Option<&Path>) -> Child {
    let wal = dir.join("wal");
    std::fs::create_dir(&wal).unwrap();
    write_gauge_wal(&wal, METRIC, SERIES, ROUNDS, now_ms() - 600_000);
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    let ca = ca.map(|p| p.to_str().unwrap());
    Child::spawn_with_env(
        Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
        &[
            "--stackdriver.project-id=tls-test",
            &format!("--stackdriver.api-address=https://localhost:{port}/"),
            "--stackdriver.generic.location=here",
            "--stackdriver.generic.namespace=tls",
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address={prometheus}/"),
            &format!("--web.listen-address=127.0.0.1:{}", free_port()),
            "--log.level=debug",
        ],
        &[
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                Some(keys.service_account.to_str().unwrap()),
            ),
            ("SSL_CERT_FILE", ca),
            ("SSL_CERT_DIR", None),
            // Nothing else may supply credentials: no gcloud login, no metadata server.
            ("HOME", Some(home.to_str().unwrap())),
            ("GCE_METADATA_HOST", Some("127.0.0.1:1")),
        ],
        &dir.join("sidecar.log"),
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
    let (addr, calls) = serve_tls(&emulator, &keys).await;
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let child = sidecar(
        dir.path(),
        &keys,
        addr.port(),
        &prometheus.uri(),
        Some(&keys.ca),
    );

    let total = (SERIES * ROUNDS) as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while emulator.store().stats().points_accepted < total {
        assert!(
            std::time::Instant::now() < deadline,
            "not every point arrived:\n{}",
            child.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = emulator.store().stats();
    assert_eq!(stats.points_accepted, total, "{}", child.log_tail(20));
    assert!(stats.rejected_by_reason.is_empty(), "{stats:?}");

    let calls = calls.lock().unwrap().clone();
    assert!(!calls.is_empty());
    for call in &calls {
        let authorization = call
            .authorization
            .as_deref()
            .expect("an authorization header");
        let token = authorization
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("not a bearer token: {authorization}"));
        check_token(token, &keys.public_key);
        let user_agent = call.user_agent.as_deref().unwrap_or_default();
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
    let (addr, calls) = serve_tls(&emulator, &keys).await;
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
