//! A terminal chat client on the SDK.
//!
//! ```text
//! cargo run -p palaver-sdk --example chat -- --url http://127.0.0.1:8080 \
//!     --user alice --password 'correct horse' --room general [--codec rkyv]
//! ```
//!
//! Logs in (registering the account if it does not exist), joins the room named by
//! `--room` (a room id `r_…`, or a public room's name: found with `room.list`, created
//! if there is none), prints the last messages and every new one under their senders'
//! display names, and sends each line typed on stdin. `/name NEW NAME` sets the user's
//! display name; `/quit` or end of input leaves. Reconnects by itself if the server goes
//! away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use palaver_protocol::{Codec, Message, RoomId, RoomKind, UserId};
use palaver_sdk::{Client, ClientEvent, ClientOptions, Credentials, Error};
use tokio::io::{AsyncBufReadExt as _, BufReader};

struct Args {
    url: String,
    user: String,
    password: String,
    room: String,
    codec: Codec,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut user, mut password, mut room, mut codec) =
        ("http://127.0.0.1:8080".to_owned(), None, None, "general".to_owned(), Codec::Json);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = value()?,
            "--user" => user = Some(value()?),
            "--password" => password = Some(value()?),
            "--room" => room = value()?,
            "--codec" => {
                codec = match value()?.as_str() {
                    "json" => Codec::Json,
                    "rkyv" => Codec::Rkyv,
                    other => bail!("unknown codec {other:?} (json or rkyv)"),
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: chat --url URL --user NAME --password PASSWORD [--room NAME|r_ID] [--codec json|rkyv]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(Args {
        url,
        user: user.context("--user is required")?,
        password: password.context("--password is required")?,
        room,
        codec,
    })
}

/// Display names by user id, looked up once per user (`user.get`) and kept current by
/// the user's own renames.
#[derive(Clone)]
struct Names {
    client: Client,
    known: Arc<Mutex<HashMap<UserId, String>>>,
}

impl Names {
    /// The user's display name, else their username, else their id.
    async fn of(&self, user: &UserId) -> String {
        if let Some(name) = self.known.lock().unwrap_or_else(|e| e.into_inner()).get(user) {
            return name.clone();
        }
        let name = match self.client.user_get(user).await {
            Ok(found) => found.profile.display_name.unwrap_or(found.profile.username),
            Err(_) => return user.to_string(),
        };
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(user.clone(), name.clone());
        name
    }

    fn set(&self, user: &UserId, name: String) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(user.clone(), name);
    }

    async fn line(&self, m: &Message) -> String {
        let text = if m.deleted { "(deleted)" } else { m.text.as_str() };
        let file = m.file.as_ref().map(|f| format!(" [{}: {}, {} bytes]", f.content_type, f.name, f.size));
        format!("[{}] {}: {text}{}", m.seq, self.of(&m.sender).await, file.unwrap_or_default())
    }
}

/// The room to chat in: by id, or by exact name among public rooms, or a new one.
async fn find_or_create_room(client: &Client, room: &str) -> anyhow::Result<RoomId> {
    if let Ok(id) = RoomId::parse(room) {
        return Ok(id);
    }
    let mut cursor: Option<String> = None;
    loop {
        let page = client.room_list(Some(room), cursor.as_deref(), Some(100)).await?;
        if let Some(found) = page.results.iter().find(|r| r.name == room) {
            return Ok(found.room_id.clone());
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(client.create_room(room, RoomKind::Public).await?.room_id)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let options = ClientOptions::with_codec(args.codec);
    let client = match Client::connect_with(
        &args.url,
        Credentials::password(&args.user, &args.password),
        options.clone(),
    )
    .await
    {
        Ok(client) => client,
        Err(e) if e.code() == Some(palaver_protocol::ErrorCode::Unauthorized) => {
            eprintln!("* no such account (or a wrong password): registering {}", args.user);
            Client::connect_with(&args.url, Credentials::register(&args.user, &args.password), options)
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    let me = client.user_id().context("connected without a user id")?;
    let names = Names { client: client.clone(), known: Arc::default() };
    let room = find_or_create_room(&client, &args.room).await?;
    let mut events = client.events();
    let joined = client.join(&room).await?;
    let mut backlog = client.history(&room, Some(joined.last_seq + 1), Some(20)).await?;
    backlog.reverse();
    eprintln!(
        "* {} in {} ({}) — type a line to send it, /name NAME to rename yourself, /quit to leave",
        names.of(&me).await,
        joined.room.name,
        room
    );
    for m in backlog {
        println!("{}", names.line(&m).await);
    }

    let printer = {
        let (client, names) = (client.clone(), names.clone());
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    ClientEvent::Message(m) => {
                        println!("{}", names.line(&m).await);
                        client.mark_read(&m.room, m.seq);
                    }
                    ClientEvent::Typing(t) if t.active => {
                        eprintln!("* {} is typing…", names.of(&t.user).await)
                    }
                    ClientEvent::Edit(e) => println!("[{}] (edited) {}", e.seq, e.text),
                    ClientEvent::Delete(d) => println!("[{}] (deleted)", d.seq),
                    ClientEvent::Member(m) => {
                        eprintln!("* {} {:?} the room", names.of(&m.user).await, m.change)
                    }
                    ClientEvent::Disconnected { reason, retry_in_ms } => {
                        eprintln!("* disconnected ({reason}); retrying in {retry_in_ms} ms")
                    }
                    ClientEvent::Connected { .. } => eprintln!("* connected"),
                    ClientEvent::Lagged { missed } => eprintln!("* {missed} events skipped (too slow)"),
                    ClientEvent::Closed { error: Some(e) } => eprintln!("* closed: {e}"),
                    _ => {}
                }
            }
        })
    };

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "/quit" {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Some(name) = line.trim().strip_prefix("/name ") {
            match client.user_update(Some(name.trim()), None, None).await {
                Ok(profile) => {
                    let shown = profile.display_name.unwrap_or(profile.username);
                    eprintln!("* you are now {shown}");
                    names.set(&me, shown);
                }
                Err(e) => eprintln!("* not renamed: {e}"),
            }
            continue;
        }
        match client.send(&room, &line).await {
            Ok(_) => {}
            Err(Error::Server { message, .. }) => eprintln!("* not sent: {message}"),
            Err(e) => return Err(e.into()),
        }
    }
    client.close();
    let _ = printer.await;
    Ok(())
}
