//! A Web Push service on loopback, for tests: it takes pushes as a real push service does
//! (RFC 8030 `POST` to a subscription's endpoint) and checks each one on its own, with
//! code of its own (not the server's): the VAPID token (RFC 8292: ES256 verified with the
//! expected public key, `aud` its own origin, `exp` in the future and at most 24 h ahead),
//! `Content-Encoding: aes128gcm`, `TTL`, `Urgency` and `Topic`; then it decrypts the body
//! with the subscription's private key (RFC 8291). Pushes that pass are kept for the test
//! to read; the others are answered 400 and kept as refusals.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::elliptic_curve::sec1::ToEncodedPoint;

/// A browser's subscription at the stub: what a client registers, and the private key
/// only the browser would hold.
#[derive(Clone)]
pub struct StubSubscription {
    /// `http://127.0.0.1:PORT/push/NAME`.
    pub endpoint: String,
    /// The browser's public key, base64url.
    pub p256dh: String,
    /// The authentication secret, base64url.
    pub auth: String,
    secret: p256::SecretKey,
    auth_bytes: [u8; 16],
}

/// One push the stub accepted.
#[derive(Debug, Clone)]
pub struct ReceivedPush {
    /// The subscription's name (the endpoint's last segment).
    pub subscription: String,
    /// `TTL`, seconds.
    pub ttl: u64,
    /// `Urgency`.
    pub urgency: String,
    /// `Topic`, when sent.
    pub topic: Option<String>,
    /// The VAPID token's claims.
    pub claims: serde_json::Value,
    /// The decrypted payload.
    pub payload: Vec<u8>,
}

#[derive(Default)]
struct State {
    subscriptions: HashMap<String, StubSubscription>,
    answers: HashMap<String, u16>,
    received: Vec<ReceivedPush>,
    refused: Vec<String>,
}

/// The stub. Stops with the test process.
pub struct PushService {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl PushService {
    /// Starts a stub that accepts pushes signed with the VAPID key whose public half
    /// (base64url) is `vapid_public_key`.
    pub fn start(vapid_public_key: &str) -> PushService {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (shared, key) = (state.clone(), vapid_public_key.to_owned());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (shared, key) = (shared.clone(), key.clone());
                std::thread::spawn(move || serve(stream, addr, &key, &shared));
            }
        });
        PushService { addr, state }
    }

    /// A new subscription at this stub, as a browser would make it.
    pub fn subscription(&self, name: &str) -> StubSubscription {
        let secret = loop {
            if let Ok(key) = p256::SecretKey::from_slice(&rand_bytes::<32>()) {
                break key;
            }
        };
        let auth_bytes = rand_bytes::<16>();
        let subscription = StubSubscription {
            endpoint: format!("http://{}/push/{name}", self.addr),
            p256dh: URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth_bytes),
            secret,
            auth_bytes,
        };
        self.state.lock().unwrap().subscriptions.insert(name.to_owned(), subscription.clone());
        subscription
    }

    /// Answer pushes to `name` with `status` from now on (`410`: the subscription is gone).
    pub fn answer(&self, name: &str, status: u16) {
        self.state.lock().unwrap().answers.insert(name.to_owned(), status);
    }

    /// Check and accept pushes to `name` again (undoes [`PushService::answer`]).
    pub fn clear_answer(&self, name: &str) {
        self.state.lock().unwrap().answers.remove(name);
    }

    /// The pushes accepted so far.
    pub fn received(&self) -> Vec<ReceivedPush> {
        self.state.lock().unwrap().received.clone()
    }

    /// Why pushes were refused so far.
    pub fn refused(&self) -> Vec<String> {
        self.state.lock().unwrap().refused.clone()
    }

    /// Waits up to `within` for `count` accepted pushes.
    pub fn wait_for(&self, count: usize, within: Duration) -> Vec<ReceivedPush> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= count || Instant::now() > deadline {
                return received;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    bytes
}

fn serve(stream: TcpStream, addr: SocketAddr, vapid_key: &str, state: &Mutex<State>) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0usize);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let name = request_line.split_whitespace().nth(1).and_then(|p| p.strip_prefix("/push/")).unwrap_or("");
    let (subscription, answer) = {
        let guard = state.lock().unwrap();
        (guard.subscriptions.get(name).cloned(), guard.answers.get(name).copied())
    };
    let status = {
        match (request_line.starts_with("POST "), subscription, answer) {
            (false, ..) => refuse(state, "not a POST".into()),
            (true, None, _) => 404,
            (true, Some(_), Some(status)) => status,
            (true, Some(subscription), None) => {
                match check(&headers, &body, &format!("http://{addr}"), vapid_key, &subscription, name) {
                    Ok(push) => {
                        state.lock().unwrap().received.push(push);
                        201
                    }
                    Err(why) => refuse(state, why),
                }
            }
        }
    };
    let mut stream = stream;
    let _ = write!(stream, "HTTP/1.1 {status} Stub\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
}

fn refuse(state: &Mutex<State>, why: String) -> u16 {
    state.lock().unwrap().refused.push(why);
    400
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(text).map_err(|e| format!("base64url: {e}"))
}

fn check(
    headers: &HashMap<String, String>,
    body: &[u8],
    origin: &str,
    vapid_key: &str,
    subscription: &StubSubscription,
    name: &str,
) -> Result<ReceivedPush, String> {
    let header = |n: &str| headers.get(n).map(String::as_str).ok_or(format!("no {n} header"));
    // VAPID (RFC 8292 §2–3).
    let authorization = header("authorization")?;
    let rest = authorization.strip_prefix("vapid ").ok_or("not the vapid scheme")?;
    let mut parts = rest.split(',').map(str::trim);
    let token = parts.clone().find_map(|p| p.strip_prefix("t=")).ok_or("no t=")?;
    let key = parts.find_map(|p| p.strip_prefix("k=")).ok_or("no k=")?;
    if key != vapid_key {
        return Err("signed with another key".into());
    }
    let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&b64(key)?).map_err(|e| e.to_string())?;
    let (signed, signature) = token.rsplit_once('.').ok_or("token has no signature")?;
    let signature = p256::ecdsa::Signature::from_slice(&b64(signature)?).map_err(|e| e.to_string())?;
    verifying.verify(signed.as_bytes(), &signature).map_err(|_| "the ES256 signature does not verify")?;
    let (jose, claims) = signed.split_once('.').ok_or("token has no claims")?;
    let jose: serde_json::Value = serde_json::from_slice(&b64(jose)?).map_err(|e| e.to_string())?;
    if jose["alg"] != "ES256" {
        return Err(format!("alg {}", jose["alg"]));
    }
    let claims: serde_json::Value = serde_json::from_slice(&b64(claims)?).map_err(|e| e.to_string())?;
    if claims["aud"] != origin {
        return Err(format!("aud {} is not {origin}", claims["aud"]));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    if exp <= now || exp > now + 24 * 3600 {
        return Err(format!("exp {exp} is not within 24 h of {now}"));
    }
    // RFC 8030 headers.
    if header("content-encoding")? != "aes128gcm" {
        return Err("Content-Encoding is not aes128gcm".into());
    }
    let ttl = header("ttl")?.parse::<u64>().map_err(|_| "TTL is not a number")?;
    let urgency = header("urgency")?.to_owned();
    if !["very-low", "low", "normal", "high"].contains(&urgency.as_str()) {
        return Err(format!("Urgency {urgency}"));
    }
    let topic = headers.get("topic").cloned();
    if let Some(topic) = &topic
        && (topic.len() > 32 || !topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(format!("Topic {topic:?}"));
    }
    if body.len() > 4096 {
        return Err(format!("a body of {} bytes", body.len()));
    }
    let payload = decrypt(body, subscription)?;
    Ok(ReceivedPush { subscription: name.to_owned(), ttl, urgency, topic, claims, payload })
}

/// RFC 8291 §3 and RFC 8188, as a browser reads a push.
fn decrypt(body: &[u8], subscription: &StubSubscription) -> Result<Vec<u8>, String> {
    use hkdf::Hkdf;
    use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    use sha2::Sha256;
    if body.len() < 21 {
        return Err("a body shorter than its header".into());
    }
    let salt = &body[..16];
    let key_len = usize::from(body[20]);
    let sender = body.get(21..21 + key_len).ok_or("a cut header")?;
    let record = &body[21 + key_len..];
    let sender = p256::PublicKey::from_sec1_bytes(sender).map_err(|_| "the sender key is not P-256")?;
    let shared = p256::ecdh::diffie_hellman(subscription.secret.to_nonzero_scalar(), sender.as_affine());
    let ua_public = subscription.secret.public_key().to_encoded_point(false);
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(ua_public.as_bytes());
    info.extend_from_slice(&body[21..21 + key_len]);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&subscription.auth_bytes), shared.raw_secret_bytes())
        .expand(&info, &mut ikm)
        .map_err(|_| "hkdf")?;
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).map_err(|_| "hkdf")?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).map_err(|_| "hkdf")?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| "aes")?);
    let mut record = record.to_vec();
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut record)
        .map_err(|_| "the body does not decrypt with the subscription's key")?;
    let end = plain.iter().rposition(|b| *b != 0).ok_or("no delimiter")?;
    if plain[end] != 2 {
        return Err("not the last record".into());
    }
    Ok(plain[..end].to_vec())
}
