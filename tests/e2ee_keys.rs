//! End-to-end encryption support: the key directory hands out public keys and one-time
//! prekeys (each prekey once), and two clients using vodozemac (Olm) exchange a direct
//! message that the server relays and stores only as ciphertext.
#![allow(clippy::unwrap_used, reason = "tests")]

use base64::Engine as _;
use palaver_e2e::{Account, Client, Server, register};
use palaver_protocol::{
    ClaimedKey, ClientMsgId, Codec, Encryption, ErrorCode, Event, MessageKind, OkBody, OneTimeKey, Op,
    RoomId, UserId,
};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account as OlmAccount, OlmMessage, SessionConfig};

const OLM: &str = "m.olm.v1.curve25519-aes-sha2";

fn uid(account: &Account) -> UserId {
    UserId::parse(&account.user_id).unwrap()
}

/// Publishes a fresh Olm account's keys as `device`, with `count` one-time keys.
fn publish(client: &mut Client, device: &str, olm: &mut OlmAccount, count: usize) -> u32 {
    olm.generate_one_time_keys(count);
    let one_time_keys = olm
        .one_time_keys()
        .into_iter()
        .map(|(id, key)| OneTimeKey { key_id: id.to_base64(), key: key.to_base64() })
        .collect();
    olm.mark_keys_as_published();
    match client.ok(Op::KeysUpload {
        device_id: device.into(),
        identity_key: olm.curve25519_key().to_base64(),
        signing_key: Some(olm.ed25519_key().to_base64()),
        one_time_keys,
    }) {
        OkBody::KeysUploaded(ok) => ok.one_time_key_count,
        other => panic!("{other:?}"),
    }
}

fn claim(client: &mut Client, user: &UserId) -> Vec<ClaimedKey> {
    match client.ok(Op::KeysClaim { user: user.clone(), device_id: None }) {
        OkBody::Claimed(c) => c.claimed,
        other => panic!("{other:?}"),
    }
}

/// `type:base64(ciphertext)`: how these test clients put an Olm message in `text`.
fn wire(message: &OlmMessage) -> String {
    let (kind, bytes) = message.to_parts();
    format!("{kind}:{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn unwire(text: &str) -> OlmMessage {
    let (kind, b64) = text.split_once(':').unwrap();
    OlmMessage::from_parts(
        kind.parse().unwrap(),
        &base64::engine::general_purpose::STANDARD.decode(b64).unwrap(),
    )
    .unwrap()
}

#[test]
fn two_clients_exchange_an_olm_encrypted_dm_the_server_cannot_read() {
    let mut server = Server::start(&["--shards", "2"]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut c = Client::login(server.addr, Codec::Json, &carol);

    let mut alice_olm = OlmAccount::new();
    let mut bob_olm = OlmAccount::new();
    assert_eq!(publish(&mut a, "ALICE_LAPTOP", &mut alice_olm, 2), 2);
    assert_eq!(publish(&mut b, "BOB_PHONE", &mut bob_olm, 3), 3);
    // A device's identity never changes once published.
    let swapped = Op::KeysUpload {
        device_id: "BOB_PHONE".into(),
        identity_key: OlmAccount::new().curve25519_key().to_base64(),
        signing_key: None,
        one_time_keys: Vec::new(),
    };
    b.err(swapped, ErrorCode::Conflict);

    // The directory lists bob's device; each claim takes a different one-time key.
    match a.ok(Op::KeysList { user: uid(&bob) }) {
        OkBody::Devices(d) => {
            assert_eq!(d.devices.len(), 1);
            assert_eq!((d.devices[0].device_id.as_str(), d.devices[0].one_time_key_count), ("BOB_PHONE", 3));
        }
        other => panic!("{other:?}"),
    }
    let for_alice = claim(&mut a, &uid(&bob)).remove(0);
    let for_carol = claim(&mut c, &uid(&bob)).remove(0);
    let (ka, kc) = (for_alice.one_time_key.clone().unwrap(), for_carol.one_time_key.unwrap());
    assert_ne!(ka.key_id, kc.key_id, "a one-time key is handed out once");
    claim(&mut c, &uid(&bob));
    assert!(claim(&mut c, &uid(&bob))[0].one_time_key.is_none(), "none left");

    // Alice encrypts to bob's device with the claimed keys and sends it in their DM.
    let identity = Curve25519PublicKey::from_base64(&for_alice.identity_key).unwrap();
    let one_time = Curve25519PublicKey::from_base64(&ka.key).unwrap();
    let mut outbound = alice_olm.create_outbound_session(SessionConfig::version_2(), identity, one_time);
    let secret = "meet me at the old mill at nine";
    let ciphertext = wire(&outbound.encrypt(secret));
    let room: RoomId = match a.ok(Op::DmOpen { user: uid(&bob) }) {
        OkBody::Room(r) => r.room.room_id,
        other => panic!("{other:?}"),
    };
    a.join(&room, None);
    b.join(&room, None);
    let encryption =
        Encryption { algorithm: OLM.into(), sender_device: "ALICE_LAPTOP".into(), session_id: None };
    let send = |cid: &str, text: String, encryption: Option<Encryption>| Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse(cid).unwrap(),
        kind: MessageKind::Encrypted,
        text,
        client_ts: None,
        reply_to: None,
        file: None,
        encryption: encryption.map(Box::new),
        also_to_room: false,
        thread: None,
    };
    a.err(send("bad-1", ciphertext.clone(), None), ErrorCode::Invalid);
    a.ok(send("e2ee-1", ciphertext.clone(), Some(encryption.clone())));

    // Bob's device decrypts it; the server relayed exactly the ciphertext.
    let received = b.wait_event(|e| match e {
        Event::Message(m) if m.kind == MessageKind::Encrypted => Some(m.clone()),
        _ => None,
    });
    assert_eq!(received.text, ciphertext);
    assert_eq!(received.encryption.as_deref(), Some(&encryption));
    let OlmMessage::PreKey(prekey) = unwire(&received.text) else {
        panic!("first message is a pre-key message")
    };
    let alice_identity = alice_olm.curve25519_key();
    let inbound = bob_olm.create_inbound_session(alice_identity, &prekey).unwrap();
    assert_eq!(String::from_utf8(inbound.plaintext).unwrap(), secret);

    // What the server stored: the ciphertext, nowhere the plaintext (not in the log, the
    // journal, or anywhere under the data directory).
    assert_eq!(b.history(&room, None, None)[0].text, ciphertext);
    server.terminate();
    let mut found = Vec::new();
    let mut stack = vec![server.data_dir().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    assert!(found.is_empty(), "plaintext found on disk in {found:?}");
    server.restart();
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    assert_eq!(b.history(&room, None, None)[0].kind, MessageKind::Encrypted);
}

#[test]
fn one_time_keys_cannot_be_drained_and_their_exhaustion_shows() {
    let server = Server::start(&[]);
    let [owner, stranger] = ["owner", "stranger"].map(|n| register(server.addr, n));
    let mut o = Client::login(server.addr, Codec::Json, &owner);
    let mut s = Client::login(server.addr, Codec::Json, &stranger);
    let mut olm = OlmAccount::new();
    assert_eq!(publish(&mut o, "PHONE", &mut olm, 100), 100);
    // A claimer takes a few of one user's keys, then waits; each claim says how many
    // are left.
    let mut taken = 0;
    loop {
        match s.request(Op::KeysClaim { user: uid(&owner), device_id: None }) {
            palaver_protocol::ReplyBody::Ok(OkBody::Claimed(c)) => {
                taken += 1;
                assert_eq!(c.claimed[0].one_time_key_count, 100 - taken);
            }
            palaver_protocol::ReplyBody::Err(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert!(e.retry_after_ms.unwrap() > 0);
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(taken < 100, "a stranger drained every one-time key");
    }
    assert_eq!(taken, 5);
    match o.ok(Op::KeysList { user: uid(&owner) }) {
        OkBody::Devices(d) => assert_eq!(d.devices[0].one_time_key_count, 95),
        other => panic!("{other:?}"),
    }
}
