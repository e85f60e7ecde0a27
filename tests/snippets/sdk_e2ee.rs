use palaver_sdk::e2ee::{Decrypted, E2ee};
use palaver_sdk::{Client, Error};

async fn encrypted_dm(alice: &Client, bob: &Client) -> Result<String, Error> {
    let bob_id = bob.user_id().ok_or(Error::Closed)?;
    let dm = alice.dm_open(&bob_id).await?.room_id;
    alice.join(&dm).await?;
    bob.join(&dm).await?;
    let mut bob_events = bob.events();

    let mut alice_e2ee = E2ee::new(alice, "LAPTOP").await?; // new device: keys published
    let mut bob_e2ee = E2ee::new(bob, "PHONE").await?;
    alice_e2ee.send_encrypted(&dm, "see you at nine").await?; // kind `encrypted`

    let mut text = String::new();
    while let Some(m) = bob_events.next_message().await {
        if let Decrypted::Text { text: plain, .. } = bob_e2ee.decrypt(&m).await? {
            text = plain;
            break;
        }
    }
    let saved = bob_e2ee.pickle(&[7; 32])?; // app-supplied 32-byte key
    let bob_e2ee = E2ee::restore(bob, &saved, &[7; 32]).await?;
    println!("{text} (device {} restored)", bob_e2ee.device().device_id());
    Ok(text)
}
