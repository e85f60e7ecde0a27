use palaver_sdk::protocol::RoomKind;
use palaver_sdk::{Client, ClientEvent, Credentials};

async fn hello(url: &str) -> Result<(), palaver_sdk::Error> {
    // A new server has no accounts: register one (`Credentials::password` logs in later).
    let client = Client::connect(url, Credentials::register("ferris", "correct-horse")).await?;
    let mut events = client.events(); // everything after `Connected`, in order

    let room = client.create_room("general", RoomKind::Public).await?;
    client.join(&room.room_id).await?;
    let sent = client.send(&room.room_id, "hello 👋").await?; // stored durably once this returns
    println!("stored as seq {}", sent.seq);

    while let Some(event) = events.next().await {
        match event {
            ClientEvent::Message(m) => {
                println!("[{}] {}: {}", m.seq, m.sender, m.text);
                if m.seq == sent.seq {
                    break; // our own message came back: done
                }
            }
            ClientEvent::Disconnected { reason, .. } => eprintln!("reconnecting: {reason}"),
            _ => {} // typing, receipts, presence, … (ClientEvent lists them all)
        }
    }
    client.close();
    Ok(())
}
