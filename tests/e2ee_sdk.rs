//! End-to-end encryption through the SDK (`palaver_sdk::e2ee`) against the real server:
//! a DM encrypted with Olm to every device of both users, a three-member room encrypted
//! with Megolm, a device restored from its pickle, and proof that the server has only
//! ciphertext: history returns `encrypted` messages, search does not find the words, and
//! no file under the data directory contains the plaintext.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Server, WAIT};
use palaver_protocol::{Message, MessageKind, RoomId, RoomKind};
use palaver_sdk::e2ee::{Decrypted, E2ee, MEGOLM_ALGORITHM, OLM_ALGORITHM};
use palaver_sdk::{Client, Credentials, Events};

const PASSWORD: &str = "password-123";
const PICKLE_KEY: [u8; 32] = [0x5a; 32];

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The next message of `events` that decrypts to text for this device (room keys and
/// messages for other devices are consumed on the way): the message, the plaintext and
/// the algorithm.
async fn next_plaintext(events: &mut Events, e2ee: &mut E2ee) -> (Message, String, &'static str) {
    loop {
        let message = within("an encrypted message", events.next_message()).await.unwrap();
        assert_eq!(message.kind, MessageKind::Encrypted, "{message:?}");
        match e2ee.decrypt(&message).await.unwrap() {
            Decrypted::Text { text, algorithm, .. } => return (message, text, algorithm),
            Decrypted::RoomKey { .. } | Decrypted::NotForThisDevice => {}
            other => panic!("{other:?}"),
        }
    }
}

async fn connect(url: &str, credentials: Credentials) -> (Client, Events) {
    let client = Client::connect(url, credentials).await.unwrap();
    let events = client.events();
    (client, events)
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_talk_end_to_end_encrypted_and_the_server_keeps_only_ciphertext() {
    let mut server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let (alice, mut alice_events) = connect(&url, Credentials::register("alice", PASSWORD)).await;
    let (bob, mut bob_events) = connect(&url, Credentials::register("bob", PASSWORD)).await;
    let (carol, mut carol_events) = connect(&url, Credentials::register("carol", PASSWORD)).await;
    // Alice's second device: another connection of hers with its own keys.
    let (alice_phone, mut alice_phone_events) = connect(&url, Credentials::password("alice", PASSWORD)).await;

    let mut alice_e2ee = E2ee::new(&alice, "ALICE_LAPTOP").await.unwrap();
    let mut alice_phone_e2ee = E2ee::new(&alice_phone, "ALICE_PHONE").await.unwrap();
    let mut bob_e2ee = E2ee::new(&bob, "BOB_PHONE").await.unwrap();
    let mut carol_e2ee = E2ee::new(&carol, "CAROL_DESK").await.unwrap();

    // A DM, Olm: one ciphertext per device (bob's, and alice's other device).
    let dm: RoomId = alice.dm_open(&bob.user_id().unwrap()).await.unwrap().room_id;
    for client in [&alice, &alice_phone, &bob] {
        client.join(&dm).await.unwrap();
    }
    let secret = "meet me at the old mill at nine";
    alice_e2ee.send_encrypted(&dm, secret).await.unwrap();
    let (received, text, algorithm) = next_plaintext(&mut bob_events, &mut bob_e2ee).await;
    assert_eq!((text.as_str(), algorithm), (secret, OLM_ALGORITHM));
    assert!(!received.text.contains(secret));
    let encryption = received.encryption.as_deref().unwrap();
    assert_eq!(
        (encryption.algorithm.as_str(), encryption.sender_device.as_str()),
        (OLM_ALGORITHM, "ALICE_LAPTOP")
    );
    assert_eq!(next_plaintext(&mut alice_phone_events, &mut alice_phone_e2ee).await.1, secret);
    assert_eq!(
        next_plaintext(&mut alice_events, &mut alice_e2ee).await.1,
        secret,
        "the sender reads its own"
    );

    let reply = "the mill burned down, the bakery instead";
    bob_e2ee.send_encrypted(&dm, reply).await.unwrap();
    assert_eq!(next_plaintext(&mut alice_events, &mut alice_e2ee).await.1, reply);
    assert_eq!(next_plaintext(&mut alice_phone_events, &mut alice_phone_e2ee).await.1, reply);
    assert_eq!(next_plaintext(&mut bob_events, &mut bob_e2ee).await.1, reply);

    // A room of three, Megolm: the room key goes to each device over Olm first.
    let room = alice.create_room("plans", RoomKind::Public).await.unwrap().room_id;
    for client in [&alice, &alice_phone, &bob, &carol] {
        client.join(&room).await.unwrap();
    }
    let cake = "the cake is in the second drawer";
    alice_e2ee.send_encrypted(&room, cake).await.unwrap();
    for (events, e2ee) in [
        (&mut bob_events, &mut bob_e2ee),
        (&mut carol_events, &mut carol_e2ee),
        (&mut alice_phone_events, &mut alice_phone_e2ee),
        (&mut alice_events, &mut alice_e2ee),
    ] {
        let (message, text, algorithm) = next_plaintext(events, e2ee).await;
        assert_eq!((text.as_str(), algorithm), (cake, MEGOLM_ALGORITHM));
        assert!(message.encryption.as_deref().unwrap().session_id.is_some());
    }
    let answer = "carol brings forks";
    carol_e2ee.send_encrypted(&room, answer).await.unwrap();
    assert_eq!(next_plaintext(&mut bob_events, &mut bob_e2ee).await.1, answer);
    assert_eq!(next_plaintext(&mut alice_events, &mut alice_e2ee).await.1, answer);

    // Bob's device survives a restart of the app: pickled, restored, still decrypts both
    // kinds (and older Megolm messages from history again).
    let saved = bob_e2ee.pickle(&PICKLE_KEY).unwrap();
    assert!(!saved.contains(secret) && !saved.contains(cake));
    drop(bob_e2ee);
    let mut bob_e2ee = E2ee::restore(&bob, &saved, &PICKLE_KEY).await.unwrap();
    let later = "bring the map too";
    alice_e2ee.send_encrypted(&dm, later).await.unwrap();
    assert_eq!(next_plaintext(&mut bob_events, &mut bob_e2ee).await.1, later);
    let mut history = bob.history(&room, None, None).await.unwrap();
    history.reverse();
    let mut read = Vec::new();
    for message in &history {
        let olm = message.encryption.as_deref().unwrap().algorithm == OLM_ALGORITHM;
        match bob_e2ee.decrypt(message).await {
            Ok(Decrypted::Text { text, .. }) => read.push(text),
            // A room key's Olm message decrypts once: it was read live, before the restart.
            Err(_) if olm => {}
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(read, [cake, answer]);

    // The server has ciphertext only: history says `encrypted`, search finds nothing.
    for room in [&dm, &room] {
        for message in bob.history(room, None, None).await.unwrap() {
            assert_eq!(message.kind, MessageKind::Encrypted);
            assert!(message.encryption.is_some());
            for plaintext in [secret, reply, cake, answer, later] {
                assert!(!message.text.contains(plaintext));
            }
        }
    }
    // A plain control message: once search finds it, the encrypted ones were indexed (or
    // not) too.
    alice.send(&room, "control marmalade").await.unwrap();
    within("the control message to be searchable", async {
        while alice.search("marmalade").await.unwrap().hits.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    for word in ["mill", "bakery", "drawer", "forks", "map"] {
        for client in [&alice, &bob] {
            assert!(client.search(word).await.unwrap().hits.is_empty(), "search found {word:?}");
        }
    }

    // And no file of the data directory holds any plaintext (log, journal, index).
    for client in [&alice, &alice_phone, &bob, &carol] {
        client.close();
    }
    server.terminate();
    for plaintext in [secret, reply, cake, answer, later] {
        let found = files_containing(server.data_dir(), plaintext);
        assert!(found.is_empty(), "{plaintext:?} found on disk in {found:?}");
    }
    assert!(!files_containing(server.data_dir(), "marmalade").is_empty(), "the scan does find plaintext");
}
